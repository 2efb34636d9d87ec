"""What a refresh is, apart from how a Lambda runs it.

The request an operator submits, the database users spec it carries, the target lock and the
copy claims that keep two refreshes apart, and the safety rules that decide which clusters this
tool may touch. The steps and the operator CLI both use these; the dispatcher does not.
"""
