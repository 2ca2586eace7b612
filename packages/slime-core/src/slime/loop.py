"""The train loop: generate, train, save, update weights, evaluate — slime's ``train.py`` as one page."""

import argparse
import logging

import ray

from slime.plugins import resolve
from slime.ray.placement import create_placement
from slime.ray.rollout_manager import RolloutManager
from slime.ray.train_group import TrainGroup
from slime.schedule import should_run_periodic_action

logger = logging.getLogger(__name__)


def train(args: argparse.Namespace, log=print) -> None:
    placement = create_placement(args)
    rollout_manager = ray.remote(num_cpus=0)(RolloutManager).remote(args)
    trainer = TrainGroup(args, resolve("train_backends", args.train_backend), placement)

    start_rollout_id = trainer.init(args)
    if args.start_rollout_id is not None:
        start_rollout_id = args.start_rollout_id
    if start_rollout_id > 0 and args.load:
        ray.get(rollout_manager.load.remote(start_rollout_id - 1))  # the data position saved with the checkpoint
    num_rollout_per_epoch = ray.get(rollout_manager.num_prompts.remote()) // args.rollout_batch_size
    num_rollout = args.num_rollout or num_rollout_per_epoch * (args.num_epoch or 1)

    receiver = ray.get(rollout_manager.weight_receiver.remote())
    # Always push the trainer's weights first, so the engines serve exactly the policy being trained.
    trainer.update_weights(receiver, str(start_rollout_id))

    for rollout_id in range(start_rollout_id, num_rollout):
        if rollout_id == 0 and args.eval_interval is not None and not args.skip_eval_before_train:
            log(f"eval {rollout_id}: {ray.get(rollout_manager.eval.remote(rollout_id))}")

        batch, samples, rollout_metrics = ray.get(rollout_manager.generate.remote(rollout_id))
        train_metrics = trainer.train(rollout_id, batch)
        log(f"rollout {rollout_id}: {rollout_metrics} train: {train_metrics}")

        if should_run_periodic_action(rollout_id, args.save_interval, num_rollout_per_epoch, num_rollout):
            trainer.save(rollout_id)
            ray.get(rollout_manager.save.remote(rollout_id))

        trainer.update_weights(receiver, str(rollout_id + 1))

        if should_run_periodic_action(rollout_id, args.eval_interval, num_rollout_per_epoch):
            log(f"eval {rollout_id}: {ray.get(rollout_manager.eval.remote(rollout_id))}")

    ray.get(rollout_manager.shutdown.remote())
