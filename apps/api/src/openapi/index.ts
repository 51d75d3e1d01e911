export { buildOpenApiDocument, type OpenApiDocument } from './document';
export { componentSchemas, type JsonSchema } from './schemas';
