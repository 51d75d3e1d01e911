import { type Dinov2Config, mlpHiddenSize } from './dinov2-config';

/**
 * Every parameter of Hugging Face's `Dinov2Model` with its shape, in checkpoint order. One list serves
 * both the random initialiser and the parameter count, so the two cannot drift apart.
 */
export function dinov2ParameterShapes(config: Dinov2Config): [string, number[]][] {
  const h = config.hidden_size;
  const p = config.patch_size;
  const grid = Math.floor(config.image_size / p);
  const inner = mlpHiddenSize(config);
  const out: [string, number[]][] = [
    ['embeddings.cls_token', [1, 1, h]],
    ['embeddings.mask_token', [1, h]],
    ...(config.num_register_tokens > 0
      ? ([['embeddings.register_tokens', [1, config.num_register_tokens, h]]] as [string, number[]][])
      : []),
    ['embeddings.position_embeddings', [1, 1 + grid * grid, h]],
    ['embeddings.patch_embeddings.projection.weight', [h, config.num_channels, p, p]],
    ['embeddings.patch_embeddings.projection.bias', [h]],
  ];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const l = `encoder.layer.${i}`;
    out.push([`${l}.norm1.weight`, [h]], [`${l}.norm1.bias`, [h]]);
    for (const proj of ['query', 'key', 'value']) {
      out.push([`${l}.attention.attention.${proj}.weight`, [h, h]]);
      if (config.qkv_bias) out.push([`${l}.attention.attention.${proj}.bias`, [h]]);
    }
    out.push([`${l}.attention.output.dense.weight`, [h, h]], [`${l}.attention.output.dense.bias`, [h]]);
    out.push([`${l}.layer_scale1.lambda1`, [h]]);
    out.push([`${l}.norm2.weight`, [h]], [`${l}.norm2.bias`, [h]]);
    if (config.use_swiglu_ffn) {
      out.push([`${l}.mlp.weights_in.weight`, [2 * inner, h]], [`${l}.mlp.weights_in.bias`, [2 * inner]]);
      out.push([`${l}.mlp.weights_out.weight`, [h, inner]], [`${l}.mlp.weights_out.bias`, [h]]);
    } else {
      out.push([`${l}.mlp.fc1.weight`, [inner, h]], [`${l}.mlp.fc1.bias`, [inner]]);
      out.push([`${l}.mlp.fc2.weight`, [h, inner]], [`${l}.mlp.fc2.bias`, [h]]);
    }
    out.push([`${l}.layer_scale2.lambda1`, [h]]);
  }
  out.push(['layernorm.weight', [h]], ['layernorm.bias', [h]]);
  return out;
}
