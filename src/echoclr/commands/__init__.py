"""The CLI's commands: one module per ``echoclr COMMAND``, each a frozen config dataclass and the
function that runs it. Commands build on the library (``echoclr.data``, ``echoclr.synth``,
``models``, ``weights``, ``inference`` ...) and never lend helpers to each other; only the
orchestrating commands (``experiment``, ``demo``) call other commands, to run them.
"""
