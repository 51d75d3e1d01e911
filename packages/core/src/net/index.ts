export { type AddressClassification, classifyAddress } from './address-rules';
export { type ResolvedAddress, type Resolver, systemResolver } from './resolve';
export {
  type ResponseHeaders,
  type SafeFetchInit,
  type SafeFetchResponse,
  type SafeFetchStreamResponse,
  safeFetch,
  safeFetchStream,
} from './safe-fetch';
export {
  type AddressDecision,
  checkUrl,
  createUrlPolicy,
  decideAddress,
  type UrlPolicy,
  type UrlPolicyOptions,
} from './url-policy';
