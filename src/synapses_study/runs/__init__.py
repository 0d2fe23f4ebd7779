"""Run folders on disk: each file's encoding and seal, the records a run keeps
(instruments), its history in memory, a run's folder."""
