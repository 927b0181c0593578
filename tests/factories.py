"""factory-boy factories. Realms and members are made through the app's actions where the
action does more than an insert (the realm's sequence row)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from django_presence import actions
from django_presence.models import Realm, RealmMember


class RealmFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Realm

    string_id = factory.Sequence(lambda n: f"realm{n}")
    name = factory.LazyAttribute(lambda o: f"Realm {o.string_id}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return actions.do_create_realm(**kwargs)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "password")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RealmMember

    user = factory.SubFactory(UserFactory)
    realm = factory.SubFactory(RealmFactory)
    role = RealmMember.Role.MEMBER
    is_bot = False
