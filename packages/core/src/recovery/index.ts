export {
  type Orphan,
  type OrphanIngestionOutput,
  type OrphanJobOutput,
  type RecoveryReport,
  recoveryReport,
} from './report';
