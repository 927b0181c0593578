"""The smallest user model a host might have: nothing but AbstractBaseUser and an email."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class EmailUser(AbstractBaseUser):
    """No PermissionsMixin (so no groups), and no is_active column: AbstractBaseUser's class
    attribute ``is_active = True`` is all there is."""

    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    objects = BaseUserManager()

    def __str__(self) -> str:
        return self.email
