export {
  fetchedModelId,
  identityPath,
  type ModelIdentity,
  modelIdentitySchema,
  type ReadIdentity,
  randomModelId,
  readModelIdentity,
  writeModelIdentity,
} from './identity';
export { type ResolvedModelId, resolveModelId } from './resolve';
