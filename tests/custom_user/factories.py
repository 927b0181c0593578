"""Factories for the custom user model; tests/factories.py targets the stock User."""

from __future__ import annotations

import factory

from django_presence.models import RealmMember
from tests.factories import RealmFactory

from .models import EmailUser


class EmailUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EmailUser

    email = factory.Sequence(lambda n: f"person{n}@example.org")
    password = factory.django.Password("password")


class EmailMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RealmMember

    user = factory.SubFactory(EmailUserFactory)
    realm = factory.SubFactory(RealmFactory)
    role = RealmMember.Role.MEMBER
    is_bot = False
