"""What a preview shows and which message it is of: the same context and render as a send,
SMS counted as carriers count it, sample data replaced field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.previews import PreviewRefused, TemplateFailed, choose_journey, choose_message, preview
from activities.rendering import customer_view, sample_context
from activities.samples import SAMPLE_CUSTOMER_ID, SampleProblems, load_customer, load_event
from definition import templates
from definition.channels import Channel
from definition.loader import load_journey
from definition.model import Journey
from definition.preview import preview_of
from definition.sms_text import sms_encoding
from settings import Settings

pytestmark = pytest.mark.unit

JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"
SHOP = Settings(shop_name="Butik Ali", shop_url="https://butik.example.pl", currency="PLN")


@pytest.fixture(scope="module")
def lifecycle() -> tuple[Journey, templates.BoundedEnvironment]:
    loaded, problems = load_journey(JOURNEYS / "lifecycle.yaml")
    assert loaded is not None, problems
    return loaded.definition, templates.environment(loaded.templates)


def test_an_sms_preview_says_how_carriers_will_count_it() -> None:
    polish = preview_of(Channel.SMS, {"txt": "Dziękujemy za zamówienie " + "a" * 60})

    assert (polish.encoding, polish.segments) == ("UCS-2", 2)
    assert (polish.subject, polish.html) == (None, None)
    assert preview_of(Channel.SMS, {"txt": "a" * 160}).segments == 1
    assert preview_of(Channel.SMS, {"txt": "€" * 81}).model_dump(include={"encoding", "segments"}) == {
        "encoding": "GSM-7",
        "segments": 2,
    }


def test_an_email_preview_has_its_subject_text_and_html_and_no_sms_counts() -> None:
    shown = preview_of(Channel.EMAIL, {"subject.txt": "Hi", "txt": "Hello", "html": "<p>Hello</p>"})

    assert shown.model_dump() == {
        "subject": "Hi",
        "text": "Hello",
        "html": "<p>Hello</p>",
        "encoding": None,
        "segments": None,
    }


def test_a_locale_the_journey_lacks_falls_back_to_its_first_as_a_send_does() -> None:
    assert customer_view("Ala", "de", "Europe/Berlin", ["pl", "en"])["locale"] == "pl"
    assert customer_view("Ala", "en", "Europe/Warsaw", ["pl", "en"])["locale"] == "en"
    assert sample_context(SHOP, ["pl", "en"], locale="de")["customer"]["locale"] == "pl"


def test_the_sample_is_the_one_validate_renders_with_this_shops_name_and_links() -> None:
    context = sample_context(SHOP, ["pl", "en"])
    validated = templates.sample_context()

    assert context["shop"] == {"name": "Butik Ali", "url": "https://butik.example.pl", "currency": "PLN"}
    assert context["links"]["unsubscribe"].startswith("https://butik.example.pl/unsubscribe?m=")
    assert (context["customer"], context["metrics"], context["event"], context["discount_code"]) == (
        validated["customer"],
        validated["metrics"],
        validated["event"],
        validated["discount_code"],
    )


def test_the_email_and_the_sms_of_one_name_need_a_channel(lifecycle: tuple[Journey, object]) -> None:
    journey, _ = lifecycle

    with pytest.raises(PreviewRefused, match="sends 'thank_you' by email, sms: choose one with --channel"):
        choose_message(journey, "thank_you", None)
    assert choose_message(journey, "thank_you", Channel.SMS).stage == "new"
    with pytest.raises(PreviewRefused, match="only by email"):
        choose_message(journey, "welcome", Channel.SMS)


def test_a_mistyped_template_or_journey_is_named_with_the_closest(lifecycle: tuple[Journey, object]) -> None:
    journey, _ = lifecycle

    with pytest.raises(PreviewRefused, match="no journey sends a template 'welcom' — did you mean 'welcome'"):
        choose_journey([journey], "welcom", None)
    with pytest.raises(PreviewRefused, match="no journey 'lifecycel' — did you mean 'lifecycle'"):
        choose_journey([journey], "welcome", "lifecycel")


def test_a_preview_renders_the_journeys_template_in_the_locale_asked(
    lifecycle: tuple[Journey, templates.BoundedEnvironment],
) -> None:
    journey, environment = lifecycle
    welcome = choose_message(journey, "welcome", None)

    locale, shown = preview(environment, journey, welcome, SHOP, locale="en")

    assert locale == "en"
    assert shown.subject == "Welcome to Butik Ali! Here's 10% off your first order"
    assert shown.html is not None and "Butik Ali" in shown.html
    sms = choose_message(journey, "thank_you", Channel.SMS)
    _, text = preview(environment, journey, sms, SHOP, locale="pl")
    assert (text.encoding, text.segments) == sms_encoding(text.text)


def test_a_template_error_is_reported_as_the_send_would_record_it(
    lifecycle: tuple[Journey, templates.BoundedEnvironment],
) -> None:
    journey, _ = lifecycle
    broken = templates.environment(
        {f"pl/email/welcome.{part}": "{{ customer.nope.deeper }}" for part in templates.EMAIL_PARTS}
    )

    with pytest.raises(TemplateFailed, match="lifecycle email welcome: template error: UndefinedError"):
        preview(broken, journey, choose_message(journey, "welcome", None), SHOP)


def test_a_customer_file_replaces_the_samples_fields_it_names(tmp_path: Path) -> None:
    path = tmp_path / "ola.yaml"
    path.write_text("id: c-42\nfirst_name: Ola\nlocale: en\n")

    customer_id, customer = load_customer(path)

    assert customer_id == "c-42"
    assert customer == {"first_name": "Ola", "locale": "en", "timezone": "Europe/Warsaw"}
    path.write_text("first_name: Ola\n")
    assert load_customer(path)[0] == SAMPLE_CUSTOMER_ID


def test_a_bad_customer_file_names_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("first_name: Ola\nfrist_name: Ola\nlocale: [pl]\n")

    with pytest.raises(SampleProblems) as raised:
        load_customer(path)

    assert str(raised.value).splitlines() == [
        f"{path}:2: frist_name: unknown field; a customer file has first_name, locale, timezone, id",
        f"{path}:3: locale: Input should be a valid string",
    ]


def test_an_event_file_is_the_stages_event_and_may_leave_out_properties(tmp_path: Path) -> None:
    path = tmp_path / "cart.yaml"
    path.write_text("type: cart_abandoned\n")
    assert load_event(path) == {"type": "cart_abandoned", "properties": {}}

    path.write_text("type: cart_abandoned\nproperties:\n  cart_id: k-1\n  value: 249.9\n")
    assert load_event(path)["properties"] == {"cart_id": "k-1", "value": 249.9}

    path.write_text("type: cart_abandoned\nproperties: [1]\n")
    with pytest.raises(SampleProblems, match=r"cart.yaml:2: properties: Input should be a valid dictionary"):
        load_event(path)
    path.write_text("type: [unclosed\n")
    with pytest.raises(SampleProblems, match=r"cart.yaml:1: YAML syntax error: .* \(while parsing a flow sequence\)"):
        load_event(path)
