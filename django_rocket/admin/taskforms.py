"""The task form: a declared task's condition overrides, and runtime tasks' declarations.

It validates as ``schedule()`` does (:func:`django_rocket.ops.schedules.validate_runtime_task`)
and shows a condition's syntax error with a caret under the offending text.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_rocket.conditions import ConditionSyntaxError, parse
from django_rocket.conf import EXECUTIONS
from django_rocket.models import Task
from django_rocket.ops.schedules import validate_runtime_task

CONDITION_FIELDS = ("start_cond", "end_cond", "start_cond_override", "end_cond_override")
RUNTIME_FIELDS = (
    "func",
    "start_cond",
    "end_cond",
    "parameters",
    "execution",
    "backend",
    "queue",
    "timeout",
    "multilaunch",
)


def caret_error(exc: ConditionSyntaxError) -> SafeString:
    """Return a syntax error as HTML: its sentence, then the text with a caret under the error."""
    line = f" (line {exc.line})" if "\n" in exc.text else ""
    return format_html(
        '{}{}<pre class="rocket-caret">{}\n{}</pre>',
        exc.message,
        line,
        exc.source_line(),
        exc.caret_line(),
    )


class TaskForm(forms.ModelForm):  # type: ignore[type-arg]  # generic in django-stubs only
    """Whichever of the task's fields the admin lets this user edit on this task."""

    class Meta:
        model = Task
        fields = (
            "name",
            "description",
            *RUNTIME_FIELDS,
            "enabled",
            "start_cond_override",
            "end_cond_override",
        )
        widgets = {
            name: forms.Textarea(attrs={"rows": 2, "cols": 80, "class": "rocket-cond-input"})
            for name in CONDITION_FIELDS
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "execution" in self.fields:
            self.fields["execution"] = forms.ChoiceField(
                label=_("execution"), choices=[(e, e) for e in EXECUTIONS]
            )
        if "parameters" in self.fields:
            self.fields["parameters"].help_text = _(
                'Keyword arguments as a JSON object, e.g. {"customer": 42}.'
            )

    def _condition(self, name: str) -> str:
        text = (self.cleaned_data.get(name) or "").strip()
        if text:
            try:
                parse(text)
            except ConditionSyntaxError as exc:
                raise forms.ValidationError(caret_error(exc), code="syntax") from None
        return str(text)

    def clean_start_cond(self) -> str:
        text = self._condition("start_cond")
        if not text:
            raise forms.ValidationError(gettext("A runtime task needs a start condition."))
        return text

    def clean_end_cond(self) -> str:
        return self._condition("end_cond")

    def clean_start_cond_override(self) -> str:
        return self._condition("start_cond_override")

    def clean_end_cond_override(self) -> str:
        return self._condition("end_cond_override")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if "func" not in self.fields or any(
            f in self.errors for f in ("start_cond", "end_cond", "parameters")
        ):
            return data
        name = data.get("name") if "name" in self.fields else self.instance.name
        problems = validate_runtime_task(
            str(name or ""),
            str(data.get("func") or ""),
            data.get("start_cond", ""),
            end_cond=data.get("end_cond", ""),
            parameters=data.get("parameters") or {},
            execution=data.get("execution"),
            timeout=data.get("timeout") or None,
            enabled=bool(data.get("enabled", True)),
            multilaunch=bool(data.get("multilaunch", False)),
            backend=data.get("backend") or "",
            queue=data.get("queue") or "",
            description=data.get("description") or "",
        )
        for field, messages in problems.items():
            if field == "name" and "name" not in self.fields:
                field = "__all__"
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)
        return data
