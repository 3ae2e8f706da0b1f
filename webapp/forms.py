"""HTML forms (Flask-WTF: each carries its CSRF token)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    EmailField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from db.accounts import MIN_PASSWORD_LENGTH
from webapp.training_params import DATASETS, MAX_EPOCHS, METHODS, TASKS


def form_problems(form: FlaskForm) -> str:
    """Each field's problem in words, for a flash message: "Password: Passwords need at least 10 characters." """
    return "; ".join(f"{getattr(form, name).label.text if hasattr(form, name) else name}: {' '.join(errors)}"
                     for name, errors in form.errors.items())


class CheckboxesField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Keep me signed in on this computer")


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)],
                       description="Say what will use it, e.g. “nightly import script”.")


class NewUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[
        DataRequired(), Length(min=MIN_PASSWORD_LENGTH, message=f"Passwords need at least {MIN_PASSWORD_LENGTH} "
                               "characters; this one has fewer. Choose a longer one.")],
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.")
    role = SelectField("Role", choices={"user": "User", "admin": "Administrator"})


class FeedbackForm(FlaskForm):
    topic = SelectField("Topic", validators=[Optional()])
    emotions = CheckboxesField("Emotions", validators=[Optional()])
    summary = TextAreaField("Summary", validators=[Optional(), Length(max=5000)])

    def set_labels(self, topics: list[str], emotions: list[str]) -> None:
        self.topic.choices = {"": "— keep —"} | {t: t for t in topics}
        self.emotions.choices = {e: e for e in emotions}


class TrainingForm(FlaskForm):
    datasets = CheckboxesField("Datasets", choices=DATASETS, default=list(DATASETS))
    include_corrections = BooleanField("Include people's corrections", default=True)
    tasks = CheckboxesField("Tasks", choices=TASKS, default=list(TASKS))
    method = RadioField("Method", choices=METHODS, default="lora")
    epochs = IntegerField("Epochs", default=1, validators=[DataRequired(), NumberRange(1, MAX_EPOCHS)])
    learning_rate = DecimalField("Learning rate", places=None, validators=[Optional()],
                                 description="Empty: 0.0003 for LoRA, 0.0001 for a full fine-tune.")
