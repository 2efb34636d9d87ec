"""aurora-restore's operator side: the command line, the local rehearsal, the deployed-stack commands.

None of this ships in the Lambda package; the Lambda is ``dispatcher`` + ``steps``.
"""
