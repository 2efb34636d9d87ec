"""The local rehearsal: moto's Step Functions engine runs the generated state machine against a
seeded moto world, every Task through the real dispatcher, an embedded PostgreSQL as the cluster.

Needs the ``rehearsal`` extra (``pip install 'aurora-restore[rehearsal]'``); the entry point is
``aurora-restore simulate`` (:mod:`aurora_restore.commands.simulate`).
"""
