"""Routing replay for mixture-of-experts training: megatron-core's routers use the experts slime gives them.

``--use-rollout-routing-replay`` (slime's R3, arXiv 2510.11370): every forward of the policy routes each token to the
experts the rollout engine chose for it (``TrainBatch.rollout_routed_experts``), so the trainer's log-probs are those
of the computation that sampled the tokens. ``--use-routing-replay`` (arXiv 2507.18071): the old-policy forward
records its routes and the optimizer steps replay them, so later steps of a rollout do not route differently from
the policy whose ratios they clip. Reference forwards route as usual.

megatron-core asks each ``TopKRouter``'s ``router_replay`` for its top-k; ``RoutingReplay`` sets that to a
``_RouterRoutes`` of its own. Replayed routes are queued per micro-batch before its forward; activation
recomputation inside the backward takes them again in the same order (pipeline schedules run backwards in forward
order). A replayed router still learns: its probabilities are its own scores at the replayed experts.
"""

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.transformer.moe.router import TopKRouter

from slime_megatron.batches import MicroBatch

ROUTE, RECORD, REPLAY = "route", "record", "replay"


class _RouterRoutes:
    """One router's top-k: its own (``route``), its own and kept (``record``), or queued ones (``replay``)."""

    def __init__(self) -> None:
        self.mode = ROUTE
        self.forward_queue: deque[torch.Tensor] = deque()
        self.backward_queue: deque[torch.Tensor] = deque()
        self.recorded: list[torch.Tensor] = []

    def reset(self, mode: str) -> None:
        self.mode = mode
        self.forward_queue.clear()
        self.backward_queue.clear()
        self.recorded.clear()

    def get_replay_topk(
        self,
        scores: torch.Tensor,
        topk: int,
        num_groups: int | None = None,
        group_topk: int | None = None,
        default_compute_topk: Callable | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """megatron-core's call (``moe_utils.topk_routing_with_score_function``): probabilities and expert ids."""
        if self.mode == ROUTE:
            return default_compute_topk(scores, topk, num_groups=num_groups, group_topk=group_topk)
        if self.mode == RECORD:
            probs, indices = default_compute_topk(scores, topk, num_groups=num_groups, group_topk=group_topk)
            self.recorded.append(indices.detach())
            return probs, indices
        if torch._C._current_graph_task_id() != -1:  # recomputing activations inside the backward pass
            indices = self.backward_queue.popleft()
        else:
            indices = self.forward_queue.popleft()
            self.backward_queue.append(indices)
        indices = indices.to(scores.device, torch.long)
        return scores.gather(1, indices), indices


class RoutingReplay:
    """The routes of one rollout's samples for this rank's MoE layers, and the routers that replay them."""

    def __init__(self, model: torch.nn.Module, num_layers: int, topk: int, sequence_parallel: bool) -> None:
        routers = [module for module in model.modules() if isinstance(module, TopKRouter)]
        if not routers:
            raise ValueError("--use-routing-replay / --use-rollout-routing-replay need a mixture-of-experts model")
        self.routers = [_RouterRoutes() for _ in routers]
        for router, routes in zip(routers, self.routers, strict=True):
            router.router_replay = routes
        self.layers = [router.layer_number - 1 for router in routers]  # global, 0-based: the engine's layer index
        self.num_layers = num_layers
        self.topk = topk
        self.sequence_parallel = sequence_parallel
        self.routes: dict[int, torch.Tensor] = {}  # sample id -> [tokens, this rank's MoE layers, top-k]

    def _unrouted(self, num_tokens: int) -> torch.Tensor:
        """Routes for tokens nobody routed (padding, a last token): the first top-k experts; they reach no loss."""
        return torch.arange(self.topk, dtype=torch.int32).expand(num_tokens, len(self.layers), self.topk).clone()

    def set_rollout_routes(
        self, tokens: Sequence[Sequence[int]], routed_experts: Sequence[np.ndarray], sample_ids: list[int]
    ) -> None:
        """The engine's routes (``[rows, num_layers x top-k]`` per sample) for ``sample_ids``."""
        self.routes.clear()
        for i in sample_ids:
            engine = np.asarray(routed_experts[i])
            rows = engine.shape[0]
            if engine.ndim != 2 or engine.shape[1] != self.num_layers * self.topk or rows > len(tokens[i]) - 1:
                raise ValueError(
                    f"--use-rollout-routing-replay: sample {i}'s routed experts have shape {engine.shape}; expected "
                    f"at most {len(tokens[i]) - 1} rows of {self.num_layers} layers x top-{self.topk}"
                )
            routes = self._unrouted(len(tokens[i]))
            # Rows past the engine's are tokens appended after its last call (a tool's answer): nothing after them
            # is trained, so how they route does not matter.
            routes[:rows] = torch.from_numpy(engine.reshape(rows, self.num_layers, self.topk)[:, self.layers])
            self.routes[i] = routes

    @contextlib.contextmanager
    def routing(self, mode: str, micro_batches: list[MicroBatch]) -> Iterator[Callable[[MicroBatch], None] | None]:
        """Routers in ``mode`` for one schedule run over ``micro_batches``; yields what runs before each forward.

        ``record`` keeps the routes of the run, by sample, for later ``replay`` runs.
        """
        for routes in self.routers:
            routes.reset(mode)
        try:
            yield self._queue if mode == REPLAY else None
            if mode == RECORD:
                self._keep_recorded(micro_batches)
        finally:
            for routes in self.routers:
                routes.reset(ROUTE)

    def _local_sequence(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's part of a ``[seq, ...]`` tensor: sequence parallelism splits it over tensor-parallel ranks."""
        if not self.sequence_parallel:
            return tensor
        size = parallel_state.get_tensor_model_parallel_world_size()
        return tensor.chunk(size, dim=0)[parallel_state.get_tensor_model_parallel_rank()]

    def _queue(self, batch: MicroBatch) -> None:
        seq_len = batch.tokens.shape[1]
        routes = torch.stack(
            [torch.cat([self.routes[i], self._unrouted(seq_len - len(self.routes[i]))]) for i in batch.sample_ids],
            dim=1,
        )  # [seq, batch, layers, top-k]: routers see tokens sequence-major
        routes = self._local_sequence(routes)
        for layer, router in enumerate(self.routers):
            router.forward_queue.append(routes[:, :, layer].reshape(-1, self.topk))

    def _keep_recorded(self, micro_batches: list[MicroBatch]) -> None:
        for index, batch in enumerate(micro_batches):
            seq_len, size = batch.tokens.shape[1], batch.tokens.shape[0]
            local = torch.stack([router.recorded[index] for router in self.routers], dim=1).to(torch.int32)
            if self.sequence_parallel:
                parts = [torch.empty_like(local) for _ in range(parallel_state.get_tensor_model_parallel_world_size())]
                dist.all_gather(parts, local, group=parallel_state.get_tensor_model_parallel_group())
                local = torch.cat(parts)
            routes = local.cpu().view(seq_len, size, len(self.routers), self.topk)
            for row, (i, length) in enumerate(zip(batch.sample_ids, batch.total_lengths, strict=True)):
                self.routes[i] = routes[:length, row].clone()
