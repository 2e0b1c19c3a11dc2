"""The one error type for bad input: its message names the input, what is wrong and what is expected.
`lumiere-eval` prints it on one line and exits with code 2 (a traceback only under --debug or LUMIERE_DEBUG=1)."""


class EvalError(Exception):
    pass
