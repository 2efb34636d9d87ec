"""Build-time code: the pipeline declaration, the state machine, the CloudFormation template, the zip.

Nothing here ships in the Lambda package (the Lambda is ``dispatcher`` + ``steps``).
"""
