"""The pipeline's steps: one module per step, or one package when a step needs several modules.

Every public module and package here is imported by ``dispatcher.registry.load_builtin_steps``,
which registers its step (``@register``). A package keeps beside its step what serves only it;
``steps/lib/`` holds only what several steps share, and no step imports another step.
"""
