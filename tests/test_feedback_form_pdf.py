"""The printed form as PDF where a converter is installed (a child process on the reactor)."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from gateway.feedback.form_pdf import find_converter, html_to_pdf


def fake_wkhtmltopdf(tmp_path, body="#!/bin/sh\nprintf '%%PDF-1.4 ' > \"$5\"; cat \"$4\" >> \"$5\"\n"):
    tool = tmp_path / "wkhtmltopdf"
    tool.write_text(body)
    tool.chmod(0o755)
    return str(tool)


@pytest_twisted.inlineCallbacks
def test_the_page_goes_through_the_converter_as_its_argv_says(tmp_path):
    tool = fake_wkhtmltopdf(tmp_path)
    assert find_converter(tool) == tool
    pdf = yield defer.Deferred.fromCoroutine(html_to_pdf(reactor, "<p>正式反馈单</p>", tool))
    assert pdf.startswith(b"%PDF-1.4 ") and "正式反馈单".encode() in pdf


@pytest_twisted.inlineCallbacks
def test_a_failing_converter_is_an_error_naming_it(tmp_path):
    tool = fake_wkhtmltopdf(tmp_path, "#!/bin/sh\necho 'cannot load page' >&2\nexit 3\n")
    with pytest.raises(RuntimeError, match="wkhtmltopdf exited 3: cannot load page"):
        yield defer.Deferred.fromCoroutine(html_to_pdf(reactor, "<p>x</p>", tool))


def test_a_configured_converter_that_is_not_there_is_none(tmp_path):
    assert find_converter(str(tmp_path / "no-such-tool")) is None


@pytest_twisted.inlineCallbacks
def test_over_http_pdf_where_installed_else_501(migrated_url, tmp_path):
    from datetime import datetime, timezone

    from sqlalchemy import update

    from gateway.storage.schema import order_teams
    from tests._http_rig import start_rig
    rig = yield start_rig(migrated_url, tmp_path)
    try:
        status, body, _ = yield rig.call("POST", "/api/v1/orders", {
            "incident_ref": "XJ-PDF", "kind": "rescue", "text": "山体滑坡", "target": "teams:PUB-07",
            "rule": "same_township"}, key=rig.keys["dispatch"])
        code = body["order_code"]
        yield rig.db.run(lambda c: c.execute(update(order_teams).values(state="finished",
                                                                        finished_at=datetime.now(timezone.utc))))
        status, body, resp = yield rig.call("GET", f"/api/v1/orders/{code}/teams/PUB-07/report?format=pdf",
                                            key=rig.keys["read"])
        if find_converter() is None:
            assert status == 501 and body["field"] == "format"
        else:
            assert status == 200, body
            assert resp.headers.getRawHeaders("content-type")[0] == "application/pdf" and body.startswith("%PDF")
    finally:
        yield rig.stop()
