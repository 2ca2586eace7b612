"""Weight transport from trainer to rollout engines that core provides itself (disk); backends add their own."""
