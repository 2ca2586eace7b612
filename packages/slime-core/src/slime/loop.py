"""The train loop: generate, train, save, update weights, evaluate — slime's ``train.py`` as one page.

With ``--async`` the next rollout generates while the current one trains (data one policy version old), as slime's
``train_async.py``; weights are only swapped between generations. ``--debug-rollout-only`` runs it without a trainer
(generation, rewards and eval on --hf-checkpoint's weights), ``--debug-train-only`` without engines (the rollouts come
from ``--load-debug-rollout-data`` dumps or a rollout function that does not generate); neither pushes weights.
"""

import argparse
import logging
import time
import traceback
from itertools import zip_longest

import ray

from slime.errors import ConfigError
from slime.metrics import finish_metrics, init_metrics, log_perf, log_train_step, publish_eval, publish_rollout
from slime.plugins import resolve
from slime.ray.placement import create_placement
from slime.ray.rollout_manager import RolloutManager
from slime.ray.train_group import TrainGroup
from slime.rl.advantages import uses_critic

logger = logging.getLogger(__name__)


def train(args: argparse.Namespace) -> None:
    init_metrics(args)  # before actors get args: it settles the W&B run they join
    placement = create_placement(args)
    rollout_manager = ray.remote(num_cpus=0)(RolloutManager).remote(args, placement)
    engines_started = rollout_manager.start.remote()  # the engines start while the trainer builds its model
    trainer = critic = None
    if not args.debug_rollout_only:
        trainer = TrainGroup(args, resolve("train_backends", args.train_backend), placement)
    if uses_critic(args):  # PPO: a value model on the train ranks' bundles, as slime places it
        critic = TrainGroup(args, resolve("train_backends", args.train_backend), placement, role="critic")
    train_actors = [actor for group in (trainer, critic) if group is not None for actor in group.actors]
    try:
        ray.get(engines_started)
        run_rollouts(args, rollout_manager, trainer, critic)
    finally:
        release(rollout_manager, train_actors, placement)
        finish_metrics()


def run_rollouts(
    args: argparse.Namespace, rollout_manager, trainer: TrainGroup | None, critic: TrainGroup | None = None
) -> None:

    start_rollout_id = trainer.init(args) if trainer is not None else 0
    if critic is not None:
        check_critic_start(args, start_rollout_id, critic.init(args))
    if args.start_rollout_id is not None:
        start_rollout_id = args.start_rollout_id
    if start_rollout_id > 0 and args.load:
        ray.get(rollout_manager.load.remote(start_rollout_id - 1))  # the data position saved with the checkpoint
    num_rollout_per_epoch = ray.get(rollout_manager.num_prompts.remote()) // args.rollout_batch_size
    num_rollout = args.num_rollout or num_rollout_per_epoch * (args.num_epoch or 1)

    pushes_weights = trainer is not None and not args.debug_train_only
    # --colocate (or --offload-*): the side that waits gives its memory to the side that runs, in slime's order.
    offload_train = args.offload_train and pushes_weights
    offload_rollout = args.offload_rollout and pushes_weights
    train_groups = [group for group in (trainer, critic) if group is not None]
    if offload_train:
        for group in train_groups:
            group.offload()
    if offload_rollout:
        ray.get(rollout_manager.release_memory.remote())
    # Always push the trainer's weights first, so the engines serve exactly the policy being trained.
    if pushes_weights:
        update_weights(args, rollout_manager, trainer, str(start_rollout_id))

    next_rollout = None  # --async: the next rollout, generating while this one trains
    for rollout_id in range(start_rollout_id, num_rollout):
        if rollout_id == 0 and args.eval_interval is not None and not args.skip_eval_before_train:
            evaluate(args, rollout_manager, rollout_id)

        timings = {}
        with timer(timings, "train_wait"):
            rollout = ray.get(next_rollout or rollout_manager.generate.remote(rollout_id))
        check_staleness(args, rollout_id, rollout.weight_versions)
        if offload_rollout:
            ray.get(rollout_manager.release_memory.remote())
        next_rollout = None
        if args.async_training and rollout_id + 1 < num_rollout:
            next_rollout = rollout_manager.generate.remote(rollout_id + 1)
        if rollout.metrics is not None:  # None: --custom-rollout-log-function-path logged it
            publish_rollout(args, rollout_id, rollout.metrics)
        trainer_metrics = {}
        if trainer is not None:
            with timer(timings, "train"):
                if offload_train:
                    for group in train_groups:
                        group.onload()
                step_metrics, trainer_metrics = train_rollout(args, rollout_id, rollout.batch, trainer, critic)
            for step_id, metrics in enumerate(step_metrics):
                log_train_step(args, rollout_id, step_id, metrics)

        if trainer is not None and should_run_periodic_action(
            rollout_id, args.save_interval, num_rollout_per_epoch, num_rollout
        ):
            with timer(timings, "save_model"):
                # Data position first: the trainer's save moves the latest-checkpoint pointer, so it must come last.
                ray.get(rollout_manager.save.remote(rollout_id))
                if critic is not None:
                    critic.save(rollout_id)
                trainer.save(rollout_id)

        if offload_train:
            for group in train_groups:
                group.offload()
        if pushes_weights and (rollout_id + 1) % args.update_weights_interval == 0:
            with timer(timings, "update_weights"):
                wait_for(next_rollout)  # never swap weights under a generation in flight
                update_weights(args, rollout_manager, trainer, str(rollout_id + 1))
        elif offload_rollout:
            ray.get(rollout_manager.resume_memory.remote())
        log_perf(args, rollout_id, timings, extra=trainer_metrics)

        if should_run_periodic_action(rollout_id, args.eval_interval, num_rollout_per_epoch):
            wait_for(next_rollout)
            evaluate(args, rollout_manager, rollout_id)


def train_rollout(
    args: argparse.Namespace, rollout_id: int, batch, trainer: TrainGroup, critic: TrainGroup | None
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Each optimizer step's ``train/*`` metrics and the trainer's rollout metrics. PPO in slime's order: the critic
    trains first and its values become the actor's advantages; the actor waits out ``--num-critic-only-steps``
    rollouts. The critic's step metrics join the actor's as ``critic-*`` (slime's ``train/critic-value_loss``)."""
    if critic is None:
        return trainer.train(rollout_id, batch)
    critic_steps, values = critic.train_critic(rollout_id, batch)
    actor_steps, metrics = [], {}
    if rollout_id >= args.num_critic_only_steps:
        actor_steps, metrics = trainer.train(rollout_id, batch, values)
    critic_steps = [{f"critic-{name}": value for name, value in step.items()} for step in critic_steps]
    steps = [{**mine, **its} for mine, its in zip_longest(actor_steps, critic_steps, fillvalue={})]
    return steps, metrics


def should_run_periodic_action(
    rollout_id: int,
    interval: int | None,
    num_rollout_per_epoch: int | None = None,
    num_rollout: int | None = None,
) -> bool:
    """slime's periodic rule for saving and evaluating: true after every ``interval``-th rollout, at each epoch's
    last rollout, and at the run's last rollout.

    ``interval`` None turns the action off. Pass ``num_rollout`` only for actions forced at the end of the run
    (saving, as in slime; evaluation is not forced there).
    """
    if interval is None:
        return False
    step = rollout_id + 1
    if step % interval == 0:
        return True
    if num_rollout_per_epoch is not None and step % num_rollout_per_epoch == 0:
        return True
    return num_rollout is not None and step == num_rollout


def update_weights(args: argparse.Namespace, rollout_manager, trainer: TrainGroup, weight_version: str) -> None:
    # Engines that released their memory take the weights back before their KV cache: the update never needs both.
    if args.offload_rollout:
        ray.get(rollout_manager.resume_memory.remote(["weights"]))
    # A receiver per update: it names the engines as they are now (a fault-tolerant restart replaces one).
    trainer.update_weights(ray.get(rollout_manager.weight_receiver.remote()), weight_version)
    ray.get(rollout_manager.weights_updated.remote(weight_version))
    if args.offload_rollout:
        ray.get(rollout_manager.resume_memory.remote(["kv_cache"]))


def release(rollout_manager, train_actors: list, placement) -> None:
    """Stop the engines (no orphan servers), end the actors and free the placement group, even after a failure."""
    try:
        ray.get(rollout_manager.shutdown.remote(), timeout=120)
    except ray.exceptions.RayActorError:
        # The manager is gone (killed, or its node lost): the engines and router it started end with it (their
        # parent watch), and the error that ended the run is the one to report, not this one.
        logger.warning("the rollout manager was gone at shutdown; its engines end with it")
    finally:
        end_actors([rollout_manager, *train_actors])
        ray.util.remove_placement_group(placement.group)


def end_actors(actors: list, grace: float = 10.0) -> None:
    """Let each actor exit on its own, after its ``close()`` if it has one, then kill those still there (busy or hung
    after a failure elsewhere).

    What an actor shares through torch (the weight sender's buffer) goes in ``close()``, while the actor is whole: a
    killed actor leaves it in /dev/shm, and the kill comes as soon as the exit call returns, often before the
    actor's exit handlers have run; those that do run find torch's shared-memory manager killed by Ray."""
    exits = [actor.__ray_call__.remote(close_and_exit) for actor in actors]
    ray.wait(exits, num_returns=len(exits), timeout=grace)
    for actor in actors:
        ray.kill(actor)


def close_and_exit(actor) -> None:
    """Runs inside an actor (``end_actors``): its ``close()``, if it has one, then its exit as ``__ray_terminate__``."""
    close = getattr(actor, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # the actor exits all the same; its output shows why the close failed
            traceback.print_exc()
    ray.actor.exit_actor()


def wait_for(rollout_ref) -> None:
    """Let an in-flight generation finish (its result stays in Ray for the next iteration)."""
    if rollout_ref is not None:
        ray.wait([rollout_ref])


def check_staleness(args: argparse.Namespace, rollout_id: int, weight_versions: list[str]) -> None:
    """Guard: data trains at most --max-staleness policy versions behind (by default what the loop's order gives:
    one with --async, plus what --update-weights-interval skips).

    In a debug mode no weights go from the trainer to the engines (rollout-only: the engines keep --hf-checkpoint's;
    train-only: the rollouts come from dumps of another run, or are not generated): nothing to check."""
    if args.debug_rollout_only or args.debug_train_only:
        return
    allowed = args.max_staleness
    versions = [int(version) for version in weight_versions if version]
    if versions and rollout_id - min(versions) > allowed:
        raise RuntimeError(
            f"rollout {rollout_id} was generated with weights of version {min(versions)}: "
            f"{rollout_id - min(versions)} versions stale, more than the {allowed} this run allows"
        )


def check_critic_start(args: argparse.Namespace, actor_start: int, critic_start: int) -> None:
    """PPO resumes the actor and the critic from the same rollout (``--start-rollout-id`` overrides both)."""
    if critic_start != actor_start and args.start_rollout_id is None:
        raise ConfigError(
            f"--load {args.load}: the actor's checkpoint resumes at rollout {actor_start} but the critic's "
            f"at {critic_start}; a PPO run resumes both from the same rollout"
        )


def eval_only(args: argparse.Namespace) -> None:
    """``slime eval``: the eval datasets once, on the weights the engines load from ``--hf-checkpoint``."""
    init_metrics(args)
    rollout_manager = ray.remote(num_cpus=0)(RolloutManager).remote(args, train=False)
    try:
        ray.get(rollout_manager.start.remote())
        evaluate(args, rollout_manager, args.start_rollout_id or 0)
    finally:
        try:
            ray.get(rollout_manager.shutdown.remote(), timeout=120)
        finally:
            ray.kill(rollout_manager)
            finish_metrics()


def evaluate(args: argparse.Namespace, rollout_manager, rollout_id: int) -> None:
    metrics = ray.get(rollout_manager.eval.remote(rollout_id))
    if metrics is not None:  # None: --custom-eval-rollout-log-function-path logged it
        publish_eval(args, rollout_id, metrics)


class timer:
    """``with timer(timings, "train"):`` adds the block's seconds to ``timings["train"]``."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
