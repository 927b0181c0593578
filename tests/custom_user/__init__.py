"""A host app with a custom user model: email as the username, no groups, no is_active field.

Its tests run with ``pytest --ds=tests.settings_custom_user tests/custom_user``.
"""
