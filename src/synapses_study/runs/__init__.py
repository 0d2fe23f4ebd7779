"""Run folders on disk: each file's encoding and seal, the lifetime record, a run's folder."""
