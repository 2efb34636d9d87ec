"""The pipeline's steps: one module per step, each registering one class with ``@register``.

Every public module here is imported by ``dispatcher.registry.load_builtin_steps``; helpers
shared by several steps live in ``steps/lib/`` (a package, so it is not taken for a step).
"""
