"""Finding a final answer in a response and putting it in a canonical form, with plain string work only (fast).

The normal form follows the conventions of the MATH grading scripts: ``\\dfrac`` is ``\\frac``, units, degrees, percent
signs, dollar signs and ``\\text{}`` wrappers go, ``x = 5`` is ``5``, ``1,000`` is ``1000``, ``(B)`` is ``B``.
"""

import re
from fractions import Fraction

from slime.rollout.reward import last_boxed_answer

# A model's closing "Answer: ..." line (DAPO / Minerva style); the last one wins.
_ANSWER_LINE = re.compile(r"(?i)answer\s*(?:is)?\s*:\s*([^\n]+)")

# Trailing words that are units (or counted nouns) in MATH-style answers: "10 cm", "5\text{ dollars}", "3 ways".
_UNITS = (
    "square units|sq units|units|unit|square feet|square inches|square meters|square centimeters|sq ft|"
    "centimeters|centimetres|centimeter|meters|metres|meter|kilometers|km|cm|mm|"
    "inches|inch|feet|foot|ft|yards|yard|miles|mile|mph|"
    "seconds|second|sec|minutes|minute|min|hours|hour|hrs|hr|days|day|weeks|week|years|year|"
    "dollars|dollar|cents|cent|"
    "degrees|degree|points|point|ways|way|people|students|digits|integers|numbers|"
    "pounds|pound|lbs|kg|grams|gram|liters|liter|ml|gallons|gallon"
)
# One-letter units only with a space before them ("5 m"), since "5m" is more likely a variable.
_TRAILING_UNIT = re.compile(rf"^(.*[\d}}])(?:\s*(?:{_UNITS})|\s+[mgls])(?:\^\{{?[23]\}}?)?\.?$")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|rm|operatorname)\s*\{([^{}]*)\}")
_CHOICE = re.compile(r"^\(?([A-J])\)?[.:]?$")
_SHORT_LHS = re.compile(r"^[a-zA-Z](?:_?\{?\w\}?)?\s*=(?!=)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^-?\d+\.\d+$")
_FRACTION = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_SLASH = re.compile(r"^(-?\d+)/(\d+)$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
# Words that are mathematics rather than text, when written without a backslash.
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "inf", "infty", "oo", "frac"}


def answer_after_thinking(response: str) -> str | None:
    """The part of a response after the reasoning: after ``</think>``, or after ``###Response``; None without either."""
    for marker in ("</think>", "###Response"):
        if marker in response:
            return response.split(marker, 1)[1]
    return None


def answer_line(text: str) -> str | None:
    """The last ``Answer: ...`` (or ``answer is: ...``) line's content, without math delimiters or a final period."""
    found = _ANSWER_LINE.findall(text)
    if not found:
        return None
    answer = found[-1].strip()
    boxed = last_boxed_answer(answer)
    if boxed is not None:
        return boxed
    return answer.strip("$ ").removesuffix(".").strip("$ ") or None


def final_answer(text: str) -> str | None:
    """The answer a response commits to: its last ``\\boxed{}``, else its last ``Answer:`` line."""
    boxed = last_boxed_answer(text)
    return boxed if boxed else answer_line(text)


def gold_answers(label: object) -> list[str]:
    """The acceptable answers in a label: one value or a list of them, each unwrapped from ``\\boxed{}`` if boxed."""
    values = label if isinstance(label, list | tuple) else [label]
    answers = []
    for value in values:
        if value is None:
            continue
        text = str(value)
        if "\\boxed" in text or "\\fbox" in text:
            text = last_boxed_answer(text) or ""
        if text.strip():
            answers.append(text)
    return answers


def _unwrap_text_commands(s: str) -> str:
    # Innermost first, until none is left: \text{\textbf{x}} -> x.
    while True:
        unwrapped = _TEXT_COMMAND.sub(r"\1", s)
        if unwrapped == s:
            return s
        s = unwrapped


def _fix_shorthand(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \sqrt2 -> \sqrt{2}: single-character arguments without braces.
    s = re.sub(r"\\frac(?![{a-zA-Z])\s*([^{\s\\])\s*([^{\s\\])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(?![{])\s*([^{\s\\])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(?![{a-zA-Z])\s*([^{\s\\])\{", r"\\frac{\1}{", s)
    return re.sub(r"\\sqrt(?![{\[a-zA-Z])\s*([^{\s\\])", r"\\sqrt{\1}", s)


def normalize_answer(answer: str) -> str:
    """A canonical string for a final answer, so that equal answers written differently compare equal as strings."""
    s = str(answer).strip().replace("\u2212", "-")  # a Unicode minus sign is a minus
    boxed = last_boxed_answer(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\n", " ").replace("\\\\", "\\")
    for delimiter in ("\\(", "\\)", "\\[", "\\]"):
        s = s.replace(delimiter, "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:!|,|;|:|quad|qquad)", " ", s)
    s = s.replace("\\ ", " ").replace("~", " ")
    s = re.sub(r"\\(?:displaystyle|left|right|big|Big|bigl|bigr|Bigl|Bigr)(?![a-zA-Z])", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("{,}", ",")
    s = _unwrap_text_commands(s).strip()
    s = s.removesuffix(".").strip()
    unit = _TRAILING_UNIT.match(s)
    if unit:
        s = unit.group(1).strip()
    if _SHORT_LHS.match(s) and s.count("=") == 1:
        s = s.split("=", 1)[1]
    # Whitespace carries no meaning, except between a command and a letter (\pi r must not become \pir).
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", lambda m: m.group(1) + "\x00", s)
    s = re.sub(r"\s+", "", s).replace("\x00", " ")
    s = _fix_shorthand(s)
    s = re.sub(r"(?<!\d)\.(\d)", r"0.\1", s)  # .5 -> 0.5
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _DECIMAL.match(s):
        s = s.rstrip("0").removesuffix(".")
    if s in ("-0", "+0"):
        s = "0"
    s = s.removeprefix("+")
    choice = _CHOICE.match(s)
    if choice:
        s = choice.group(1)
    slash = _SLASH.match(s)
    if slash:
        s = f"\\frac{{{slash.group(1)}}}{{{slash.group(2)}}}"
    return s


def as_number(normalized: str) -> Fraction | None:
    """The exact value of a normalized answer that is a plain number or a numeric fraction; None otherwise."""
    try:
        if _NUMBER.match(normalized):
            return Fraction(normalized)
        fraction = _FRACTION.match(normalized)
        if fraction:
            value = Fraction(fraction.group(2)) / Fraction(fraction.group(3))
            return -value if fraction.group(1) else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_choice(normalized: str) -> bool:
    """A multiple-choice letter (A to J)."""
    return len(normalized) == 1 and "A" <= normalized <= "J"


def is_text(normalized: str) -> bool:
    """Words rather than mathematics (``Monday``, ``no solution``): compared only as strings, never symbolically,
    since a symbolic parser reads a word as a product of variables."""
    for word in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", normalized):
        if word.lower() not in _MATH_WORDS:
            return True
    return False
