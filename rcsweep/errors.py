"""Error types, and the suggestion their messages share. A :class:`UserError` is bad input: the CLI
prints its one-line message and exits 2."""
import difflib


class UserError(ValueError):
    """Bad input from the user (config, file, name, path). The message is one line naming the problem."""


class ConfigError(UserError):
    """An invalid configuration value. ``field`` names the offending key; ``message`` is what is
    wrong with it (the error reads ``"<field>: <message>"``), for re-raising it under another name."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class DataNotFoundError(UserError):
    """A dataset is not present locally and cannot be downloaded."""


class CheckpointError(UserError):
    """A checkpoint or model file is missing, corrupted, tampered with or unsafe."""


class DeviceUnavailable(UserError):
    """A device asked for (``--device cuda:7``) or assigned by Ray (a GPU on a node where CUDA is not
    usable) that this process cannot use."""


class TrainingCollapsed(RuntimeError):
    """Training stopped: loss became NaN/inf or accuracy collapsed to chance. Not a user error."""


def did_you_mean(word: str, options) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``word``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def section_keys(v, name: str, known, example: str, noun: str = "option") -> dict:
    """``v``, the sweep file's section ``name``, as a mapping whose keys are all ``known``; else a
    :class:`ConfigError` naming the section (``must be a mapping like EXAMPLE``) or the unknown key
    (``name.key: unknown NOUN (did you mean ...?); NOUNs: ...``)."""
    if not isinstance(v, dict):
        raise ConfigError(name, f"must be a mapping like {example}, got {v!r}")
    for k in v:
        if k not in known:
            raise ConfigError(f"{name}.{k}", f"unknown {noun}" + did_you_mean(str(k), known)
                              + f"; {noun}s: {', '.join(known)}")
    return v
