export { jobIdTime, newJobId } from './ids';
export { DEFAULT_JOB_PRIORITY, JobQueue } from './job-queue';
export { JobStore, jobKeys } from './job-store';
export {
  type CreateJobRequest,
  createJobRequestSchema,
  type DeliveryState,
  deliveryStateSchema,
  type EmbedJobData,
  embedJobSchema,
  FINAL_STATES,
  JOB_STATES,
  type JobImage,
  type JobLocation,
  type JobOutput,
  type JobRecord,
  type JobState,
  jobImageSchema,
  jobLocationSchema,
  jobOutputSchema,
  jobRecordSchema,
} from './schemas';
