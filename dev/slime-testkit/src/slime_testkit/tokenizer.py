"""A small byte-level BPE tokenizer trained locally, for tests, tiny models and the CPU demo (no hub access needed).

It is built like Qwen2's tokenizer (NFC, Qwen2's split regex, then ByteLevel without its own regex) and saved with
``tokenizer_class: Qwen2Tokenizer``. transformers 5 rebuilds a ``Qwen2Tokenizer``'s pipeline in Python and ignores
the one in ``tokenizer.json``, while SGLang follows ``tokenizer.json``; building the same pipeline here keeps both
giving the same ids, whether or not a qwen2 ``config.json`` sits in the same directory.

Usage::

    from slime_testkit.tokenizer import build_tokenizer
    path = build_tokenizer(tmp_path / "tokenizer")  # then AutoTokenizer.from_pretrained(path)
"""

import json
from pathlib import Path

# Qwen2's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, newlines, spaces.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Ids 0, 1, 2 in this order. As in Qwen2.5-Instruct, <|im_end|> ends a turn (eos) and <|endoftext|> pads.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

# ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, "<|im_start|>assistant\n" as generation prompt.
# With tools, a system turn lists them (one JSON object per line inside <tools>), merged with a leading system message.
CHATML_TEMPLATE = r"""{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0]['role'] == 'system' %}
{{- messages[0]['content'] + '\n\n' }}
{%- endif %}
{{- '# Tools\n\n<tools>' }}
{%- for tool in tools %}
{{- '\n' + (tool | tojson) }}
{%- endfor %}
{{- '\n</tools><|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if not (tools and loop.first and message['role'] == 'system') %}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %}"""

# Qwen2.5-Instruct's way of rendering tools, tool calls and tool responses (its template, without the default system
# prompt): an assistant turn's calls as <tool_call> JSON after its content; consecutive tool messages as one user turn
# of <tool_response> blocks. For tests of multi-turn tool use; set it as a tokenizer's chat_template.
QWEN_TOOLS_TEMPLATE = r"""{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
{{- (tool_call.arguments | tojson) + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""

# Enough varied text (prose, math, digits, code, chat turns) for the merges to look like a real tokenizer's.
DEFAULT_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.",
    'Remember to put your answer on its own line after "Answer:".',
    "Let's think step by step and output the final answer within \\boxed{}.",
    "In triangle $ABC$, $\\sin \\angle A = \\frac{4}{5}$ and $\\angle A < 90^\\circ$.",
    "Find the number of positive integers less than 1000 that are divisible by 7 but not by 11.",
    "Every morning Aya goes for a 9-kilometer-long walk and stops at a coffee shop afterwards.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? The answer is 72.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)",
    "You are a helpful assistant. Please answer the question below.",
    "What is the capital of France? The capital of France is Paris.",
    "The sum of the first n odd numbers is n squared; for example 1 + 3 + 5 = 9.",
    "If x + y = 10 and x - y = 4, then x = 7 and y = 3.",
    "The probability of rolling two sixes with a pair of fair dice is 1/36.",
    "A rectangle has a length of 12 cm and a width of 5 cm, so its diagonal is 13 cm.",
    "I'm sure they'll say it's fine, but we've checked and you're right.",
    "Therefore, the final answer is \\boxed{34}.",
    "Café, naïve, résumé: words with accents still tokenize into bytes.",
    '{"name": "calculator", "description": "Evaluate an arithmetic expression", "parameters": {}}',
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n",
]


def build_tokenizer(
    out_dir: str | Path,
    corpus: list[str] | None = None,
    vocab_size: int = 512,
    chat_template: str | None = CHATML_TEMPLATE,
) -> Path:
    """Train a byte-level BPE tokenizer on ``corpus`` and save it (HF format) to ``out_dir``; returns ``out_dir``.

    The result is deterministic (same corpus and size give byte-identical files) and takes milliseconds to train.
    ``vocab_size`` is an upper bound: a small corpus runs out of merges earlier. Every byte has a token, so any text
    encodes. ``chat_template=None`` saves a tokenizer without a chat template (a base model's).
    """
    # Imported here so that importing slime_testkit stays cheap.
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, so nothing is ever unknown
        show_progress=False,
    )
    tokenizer.train_from_iterator(DEFAULT_CORPUS if corpus is None else corpus, trainer)

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        chat_template=chat_template,
    )
    out = Path(out_dir)
    wrapped.save_pretrained(out)
    # Name the class AutoTokenizer would pick for a qwen2 config anyway, so the loaded class never depends on it.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
