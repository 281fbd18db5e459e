"""Telemetry's sign-in: Application Insights with local authentication off (the Bicep's)
takes only Entra-signed telemetry, so Brook hands the exporter its credential when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential

from brook import azure_credential
from brook.config import load_settings
from brook.telemetry import exporter_options

CONNECTION = ("InstrumentationKey=00000000-0000-0000-0000-0000000000a1;"
              "IngestionEndpoint=https://eastus-0.in.applicationinsights.azure.com/")


def test_the_exporter_signs_in_with_entra_only_when_asked(tmp_path: Path) -> None:
    plain = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}, tmp_path)
    assert azure_credential(plain) is None  # nothing else signs in here either
    options = exporter_options(plain, None)
    assert options["connection_string"] == CONNECTION
    assert "credential" not in options

    entra = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
                           "APPLICATIONINSIGHTS_ENTRA_AUTH": "true"}, tmp_path)
    credential = azure_credential(entra)
    assert isinstance(credential, DefaultAzureCredential)
    try:
        assert exporter_options(entra, credential)["credential"] is credential
        with pytest.raises(ValueError, match="APPLICATIONINSIGHTS_ENTRA_AUTH"):
            exporter_options(entra, None)
    finally:
        credential.close()


def test_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="APPLICATIONINSIGHTS_ENTRA_AUTH"):
        load_settings({"APPLICATIONINSIGHTS_ENTRA_AUTH": "perhaps"}, tmp_path)
