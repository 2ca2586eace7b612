"""Ray orchestration: placement of trainer and rollout engines, the train actor group, the rollout manager."""
