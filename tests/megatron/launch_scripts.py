"""The train.py argument lists of slime's launch scripts (THUDM/slime, scripts/ at v0.3.1), written out for the tests.

Each is MODEL_ARGS from scripts/models/<model>.sh followed by the run script's own arrays, as the script passes
them (commented-out lines left out; ${NUM_GPUS} as 8). Paths are the scripts' own: parsing does not read them.
"""

MODELS = {
    "qwen3-4B": """--swiglu --num-layers 36 --hidden-size 2560 --ffn-hidden-size 9728 --num-attention-heads 32
        --group-query-attention --num-query-groups 8 --use-rotary-position-embeddings --disable-bias-linear
        --normalization RMSNorm --norm-epsilon 1e-6 --rotary-base 1000000 --vocab-size 151936 --kv-channels 128
        --qk-layernorm""",
    "qwen3-32B": """--swiglu --num-layers 64 --hidden-size 5120 --ffn-hidden-size 25600 --num-attention-heads 64
        --group-query-attention --num-query-groups 8 --use-rotary-position-embeddings --disable-bias-linear
        --normalization RMSNorm --norm-epsilon 1e-6 --rotary-base 1000000 --vocab-size 151936 --kv-channels 128
        --qk-layernorm --untie-embeddings-and-output-weights""",
    "qwen2.5-0.5B": """--swiglu --num-layers 24 --hidden-size 896 --ffn-hidden-size 4864 --num-attention-heads 14
        --use-rotary-position-embeddings --disable-bias-linear --add-qkv-bias --normalization RMSNorm
        --norm-epsilon 1e-6 --rotary-base 1000000 --group-query-attention --num-query-groups 2 --vocab-size 151936""",
    "llama3.1-8B-Instruct": """--swiglu --num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336
        --num-attention-heads 32 --group-query-attention --num-query-groups 8 --max-position-embeddings 131072
        --use-rotary-position-embeddings --disable-bias-linear --normalization RMSNorm --norm-epsilon 1e-5
        --rotary-base 500000 --vocab-size 128256 --kv-channels 128 --use-rope-scaling --rotary-scaling-factor 8.0
        --untie-embeddings-and-output-weights""",
    "glm4-9B": """--spec slime_plugins.models.glm4 get_glm_spec --swiglu --num-layers 40 --hidden-size 4096
        --ffn-hidden-size 13696 --num-attention-heads 32 --group-query-attention --num-query-groups 2
        --use-rotary-position-embeddings --disable-bias-linear --add-qkv-bias --normalization RMSNorm
        --norm-epsilon 1e-5 --rotary-base 10000 --vocab-size 151552 --post-self-attn-layernorm --post-mlp-layernorm
        --rotary-interleaved --rotary-percent 0.5 --no-rope-fusion --untie-embeddings-and-output-weights""",
    "qwen3-30B-A3B": f"""--disable-bias-linear --qk-layernorm --group-query-attention --num-attention-heads 32
        --num-query-groups 4 --kv-channels 128 --num-layers 48 --hidden-size 2048 --ffn-hidden-size 6144
        --normalization RMSNorm --position-embedding-type rope --norm-epsilon 1e-6 --rotary-percent 1.0 --swiglu
        --untie-embeddings-and-output-weights --vocab-size 151936 --rotary-base 1000000 --moe-ffn-hidden-size 768
        --moe-router-score-function softmax --moe-token-dispatcher-type alltoall --moe-router-topk 8
        --moe-layer-freq [{",".join(["1"] * 48)}] --num-experts 128 --moe-grouped-gemm --moe-token-drop-policy probs
        --moe-router-dtype fp32 --moe-permute-fusion --moe-aux-loss-coeff 0""",
}

_RL_ROLLOUT = """--prompt-data /root/dapo-math-17k/dapo-math-17k.jsonl --input-key prompt --label-key label
    --apply-chat-template --rollout-shuffle --rm-type deepscaler --num-rollout 3000 --rollout-batch-size 32
    --n-samples-per-prompt 8 --rollout-max-response-len 8192 --rollout-temperature 1 --global-batch-size 256
    --balance-data"""
_EVAL = """--eval-interval 20 --eval-prompt-data aime /root/aime-2024/aime-2024.jsonl --n-samples-per-eval-prompt 16
    --eval-max-response-len 16384 --eval-top-p 1"""
_GRPO = """--advantage-estimator grpo --use-kl-loss --kl-loss-coef 0.00 --kl-loss-type low_var_kl --entropy-coef 0.00
    --eps-clip 0.2 --eps-clip-high 0.28"""
_ADAM = "--optimizer adam --lr 1e-6 --lr-decay-style constant --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.98"
_CPU_ADAM = "--optimizer-cpu-offload --overlap-cpu-optimizer-d2h-h2d --use-precision-aware-optimizer"
_MISC = """--attention-dropout 0.0 --hidden-dropout 0.0 --accumulate-allreduce-grads-in-fp32 --attention-softmax-in-fp32
    --attention-backend flash"""


def _perf(tp: int, cp: int, ep: int, max_tokens: int) -> str:
    return f"""--tensor-model-parallel-size {tp} --sequence-parallel --pipeline-model-parallel-size 1
        --context-parallel-size {cp} --expert-model-parallel-size {ep} --expert-tensor-parallel-size 1
        --recompute-granularity full --recompute-method uniform --recompute-num-layers 1 --use-dynamic-batch-size
        --max-tokens-per-gpu {max_tokens}"""


def _ckpt(name: str, interval: int = 20) -> str:
    return f"""--hf-checkpoint /root/{name} --ref-load /root/{name}_torch_dist --load /root/{name}_slime/
        --save /root/{name}_slime/ --save-interval {interval}"""


SCRIPTS = {
    "run-qwen3-4B.sh": " ".join(
        [
            "--actor-num-nodes 1 --actor-num-gpus-per-node 8 --colocate",
            MODELS["qwen3-4B"],
            _ckpt("Qwen3-4B"),
            _RL_ROLLOUT,
            _ADAM,
            _GRPO,
            _perf(2, 1, 1, 9216),
            _EVAL,
            "--rollout-num-gpus-per-engine 2 --sglang-mem-fraction-static 0.7",
            _MISC,
        ]
    ),
    "run-qwen3-32B.sh": " ".join(
        [
            "--actor-num-nodes 1 --actor-num-gpus-per-node 8 --colocate",
            MODELS["qwen3-32B"],
            _ckpt("Qwen3-32B"),
            _RL_ROLLOUT,
            _ADAM,
            _CPU_ADAM,
            _GRPO,
            _perf(8, 1, 1, 20480),
            _EVAL,
            "--rollout-num-gpus-per-engine 8 --sglang-mem-fraction-static 0.7",
            _MISC,
        ]
    ),
    "run-glm4-9B.sh": " ".join(
        [
            "--actor-num-nodes 1 --actor-num-gpus-per-node 4 --rollout-num-gpus 4",
            MODELS["glm4-9B"],
            _ckpt("GLM-Z1-9B-0414"),
            _RL_ROLLOUT,
            _ADAM,
            _GRPO,
            _perf(2, 2, 1, 4608),
            _EVAL,
            "--rollout-num-gpus-per-engine 2",
            _MISC,
        ]
    ),
    "run-qwen3-4B-base-sft.sh": " ".join(
        [
            "--actor-num-nodes 1 --actor-num-gpus-per-node 8",
            MODELS["qwen3-4B"],
            _ckpt("Qwen3-4B-Base", interval=1000),
            """--rollout-function-path slime.rollout.sft_rollout.generate_rollout
            --prompt-data /root/openhermes2_5.parquet --input-key messages --rollout-shuffle --num-epoch 3
            --rollout-batch-size 128 --global-batch-size 128 --loss-type sft_loss --calculate-per-token-loss
            --disable-compute-advantages-and-returns --debug-train-only""",
            _perf(1, 1, 1, 9216),
            """--optimizer adam --lr 1e-5 --lr-decay-style cosine --min-lr 1e-6 --lr-warmup-fraction 0.1
            --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95""",
            _MISC,
        ]
    ),
    "run-qwen3-30B-A3B.sh": " ".join(
        [
            "--actor-num-nodes 1 --actor-num-gpus-per-node 8 --colocate",
            MODELS["qwen3-30B-A3B"],
            _ckpt("Qwen3-30B-A3B"),
            _RL_ROLLOUT,
            _ADAM,
            _CPU_ADAM,
            _GRPO,
            _perf(4, 1, 8, 20480),
            _EVAL,
            # The script's --sglang-cuda-graph-bs: SGLang 0.5.23 calls it --cuda-graph-bs-decode.
            "--rollout-num-gpus-per-engine 8 --sglang-mem-fraction-static 0.7 --sglang-cuda-graph-bs-decode 1 2 4 8 16",
            _MISC,
        ]
    ),
}

MOE_SCRIPTS = ("run-qwen3-30B-A3B.sh",)


def argv(script: str) -> list[str]:
    return SCRIPTS[script].split()
