"""factory_boy factories for test setup. Writes under test still go through services."""

from __future__ import annotations

import factory

from threads.models import Message, Project, Tenant, Thread


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"tenant-{n}")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"project-{n}")


class ThreadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Thread

    project = factory.SubFactory(ProjectFactory)
    tenant = factory.SelfAttribute("project.tenant")
    title = factory.Sequence(lambda n: f"thread {n}")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    thread = factory.SubFactory(ThreadFactory)
    message_id = factory.Sequence(lambda n: f"m{n}")
    seq = factory.Sequence(lambda n: n + 1)
    role = "user"
    content = "hello"


# --- Sessions (sessions_app) -------------------------------------------------------------


class SessionFactory(factory.django.DjangoModelFactory):
    """An idle root session. Status changes under test go through the services."""

    class Meta:
        model = "sessions_app.Session"

    thread = factory.SubFactory(ThreadFactory)
    tenant = factory.SelfAttribute("thread.tenant")
    project = factory.SelfAttribute("thread.project")
    current_actor = factory.Sequence(lambda n: {"kind": "user", "id": f"user-{n}"})
