export * from './error-codes';
export * from './job-failure';
