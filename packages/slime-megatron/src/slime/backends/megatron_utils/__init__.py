"""slime's import path ``slime.backends.megatron_utils``, for custom losses written against slime (see ``loss``)."""
