"""The request/response models against the server's captures, its swagger.json and its checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.horde.apimodels import (
    AIHordeHeartbeatRequest,
    AIHordeHeartbeatResponse,
    AlchemyAsyncRequest,
    AlchemyAsyncRequestFormItem,
    AlchemyAsyncResponse,
    AlchemyDeleteRequest,
    AlchemyPopResponse,
    AlchemyStatusRequest,
    AlchemyStatusResponse,
    AllStylesImageRequest,
    AllStylesImageResponse,
    AllWorkersDetailsRequest,
    AllWorkersDetailsResponse,
    DeleteImageGenerateRequest,
    DeleteTextGenerateRequest,
    FindUserRequest,
    GenMetadataEntry,
    HordePerformanceResponse,
    HordeRequest,
    HordeResponse,
    HordeStatusModelsAllRequest,
    HordeStatusModelsAllResponse,
    HordeStatusModelsSingleRequest,
    ImageGenerateAsyncDryRunResponse,
    ImageGenerateAsyncRequest,
    ImageGenerateAsyncResponse,
    ImageGenerateCheckRequest,
    ImageGenerateCheckResponse,
    ImageGenerateJobPopResponse,
    ImageGenerateStatusRequest,
    ImageGenerateStatusResponse,
    ImageGeneration,
    ImageGenerationInputPayload,
    ImageGenerationJobSubmitRequest,
    JobSubmitResponse,
    KudosTransferRequest,
    KudosTransferResponse,
    LorasPayloadEntry,
    ModelGenerationInputKobold,
    NewsRequest,
    NewsResponse,
    RequestErrorResponse,
    SingleStyleImageByNameRequest,
    SingleUserDetailsRequest,
    SingleWorkerDetailsRequest,
    TextGenerateAsyncDryRunResponse,
    TextGenerateAsyncRequest,
    TextGenerateAsyncResponse,
    TextGenerateJobPopResponse,
    TextGenerateStatusRequest,
    TextGenerateStatusResponse,
    TIPayloadEntry,
    UserDetailsResponse,
    WireRequest,
    WorkerDetailsResponse,
)
from bot.horde.consts import (
    ANON_API_KEY,
    GENERATION_STATE,
    KNOWN_ALCHEMY_TYPES,
    KNOWN_FACEFIXERS,
    KNOWN_POST_PROCESSORS,
    KNOWN_UPSCALERS,
    METADATA_TYPE,
    MODEL_TYPE,
    RC,
    WORKER_TYPE,
    WarningCode,
)

# Copied from ../shared (origin in tests/fixtures/README.md), so a plain clone runs these.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "horde"
REAL = FIXTURES / "real"
SWAGGER: dict[str, Any] = json.loads((FIXTURES / "swagger.json").read_text())

KEY = "abcdefghijklmnopqrstuv"  # 22 characters, like a real API key

SUCCESS_FIXTURES: dict[str, type[HordeResponse]] = {
    "10_img_async.json": ImageGenerateAsyncResponse,
    "11_img_check.json": ImageGenerateCheckResponse,
    "12_img_pop.json": ImageGenerateJobPopResponse,
    "14_img_submit.json": JobSubmitResponse,
    "15_img_check.json": ImageGenerateCheckResponse,
    "16_img_status.json": ImageGenerateStatusResponse,
    "23_img_b64_status.json": ImageGenerateStatusResponse,
    "31_cancel_delete.json": ImageGenerateStatusResponse,
    "32_cancel_check.json": ImageGenerateCheckResponse,
    "50_text_async.json": TextGenerateAsyncResponse,
    "51_text_pop.json": TextGenerateJobPopResponse,
    "53_text_status.json": TextGenerateStatusResponse,
    "55_text_delete.json": TextGenerateStatusResponse,
    "60_int_async.json": AlchemyAsyncResponse,
    "61_int_pop.json": AlchemyPopResponse,
    "64_int_status.json": AlchemyStatusResponse,
    "async_200_dry_run.json": ImageGenerateAsyncDryRunResponse,
    "delete_200.json": ImageGenerateStatusResponse,
    "find_user_200.json": UserDetailsResponse,
    "heartbeat_200.json": AIHordeHeartbeatResponse,
    "kudos_transfer_200.json": KudosTransferResponse,
    "news_200.json": NewsResponse,
    "performance_200.json": HordePerformanceResponse,
    "status_models_image_200.json": HordeStatusModelsAllResponse,
    "status_models_text_200.json": HordeStatusModelsAllResponse,
    "styles_image_200.json": AllStylesImageResponse,
    "text_async_200_dry_run.json": TextGenerateAsyncDryRunResponse,
    "users_1_200.json": UserDetailsResponse,
    "workers_200.json": AllWorkersDetailsResponse,
    "workers_200_three_kinds.json": AllWorkersDetailsResponse,
}

# file -> (HTTP status, rc, failing fields of a schema error)
ERROR_FIXTURES: dict[str, tuple[int, RC, set[str] | None]] = {
    "async_400_missing_prompt.json": (400, RC.RC_MISSING, {"prompt"}),
    "async_400_validation.json": (400, RC.RC_MISSING, {"params.width", "params.steps"}),
    "async_401_bad_key.json": (401, RC.InvalidAPIKey, None),
    "async_403_kudos_upfront.json": (403, RC.KudosUpfront, None),
    "check_404_unknown.json": (404, RC.RequestNotFound, None),
    "find_user_401_nokey.json": (401, RC.InvalidAPIKey, None),
    "find_user_404_unknown_key.json": (404, RC.UserNotFound, None),
    "interrogate_400_bad_form.json": (400, RC.RC_MISSING, {"forms.0.name"}),
    "kudos_transfer_400_invalid_target.json": (400, RC.InvalidTargetUsername, None),
    "kudos_transfer_400_self.json": (400, RC.KudosTransferToSelf, None),
    "status_429_ratelimit.json": (429, RC.RC_MISSING, None),
}


def _raw(name: str) -> Any:
    return json.loads((REAL / name).read_text())


def _without_empties(value: Any) -> Any:
    """Null and empty lists mean the same on this wire (the models read a null list as [])."""
    if isinstance(value, dict):
        return {k: _without_empties(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_without_empties(v) for v in value]
    return value


# --- Real captures ------------------------------------------------------------------------------


def test_every_capture_is_mapped() -> None:
    assert {path.name for path in REAL.glob("*.json")} == set(SUCCESS_FIXTURES) | set(ERROR_FIXTURES)


@pytest.mark.parametrize(("name", "model"), SUCCESS_FIXTURES.items())
def test_capture_parses_without_losing_anything(name: str, model: type[HordeResponse]) -> None:
    raw = _raw(name)
    parsed = model.model_validate(raw)
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert _without_empties(dumped) == _without_empties(raw)


def test_113_real_workers_parse() -> None:
    raw = json.loads((FIXTURES / "workers_get_200_real.json").read_text())
    workers = AllWorkersDetailsResponse.model_validate(raw)
    assert len(workers.root) == 113
    assert {w.type_ for w in workers.root} == set(WORKER_TYPE)
    first = workers.root[0]
    assert first.post_processing is True  # sent as "post-processing"
    assert first.team is not None
    assert first.team.id_ is None
    assert _without_empties(workers.model_dump(mode="json", by_alias=True, exclude_unset=True)) == (
        _without_empties(raw)
    )


def test_image_status_capture_reads_as_the_client_needs() -> None:
    status = ImageGenerateStatusResponse.model_validate(_raw("16_img_status.json"))
    (generation,) = status.generations
    assert generation.is_url
    assert generation.seed == "1234"
    assert generation.id_ == "136ea1e1-da30-4db6-9c7f-be7b7fa29b91"
    assert generation.state is GENERATION_STATE.ok
    assert not generation.is_censored
    assert status.is_final
    assert not status.is_faulted
    assert status.is_job_complete(1)
    assert not status.is_job_complete(2)


def test_base64_image_is_not_a_url() -> None:
    status = ImageGenerateStatusResponse.model_validate(_raw("23_img_b64_status.json"))
    assert not status.generations[0].is_url


def test_cancelled_status_keeps_partial_results_and_is_not_complete() -> None:
    status = ImageGenerateStatusResponse.model_validate(_raw("31_cancel_delete.json"))
    assert status.generations == []
    assert not status.is_final
    assert not status.is_job_complete(2)
    check = ImageGenerateCheckResponse.model_validate(_raw("32_cancel_check.json"))
    assert check.is_final
    assert check.is_job_complete(2)


def test_async_capture_warning_is_a_known_code() -> None:
    response = ImageGenerateAsyncResponse.model_validate(_raw("10_img_async.json"))
    assert response.id_ == "5ed6900e-34c8-409b-83c8-e38021452695"
    assert response.warnings[0].code is WarningCode.NoAvailableWorker
    assert response.message is not None


def test_text_status_capture_has_an_int_seed_and_no_generation_id() -> None:
    status = TextGenerateStatusResponse.model_validate(_raw("53_text_status.json"))
    (generation,) = status.generations
    assert generation.text == " there was a fake worker."
    assert generation.seed == 0
    assert generation.id_ is None
    assert status.is_job_complete(1)


def test_alchemy_status_capture_gives_the_caption() -> None:
    status = AlchemyStatusResponse.model_validate(_raw("64_int_status.json"))
    assert [result.caption for result in status.all_caption_results] == ["a red square"]
    assert status.forms[0].form is KNOWN_ALCHEMY_TYPES.caption
    assert status.is_final
    assert status.is_job_complete(1)


def test_pop_capture_keeps_the_text_seed() -> None:
    pop = ImageGenerateJobPopResponse.model_validate(_raw("12_img_pop.json"))
    assert pop.has_job
    assert pop.payload is not None
    assert pop.payload.seed == "830711394"
    assert pop.payload.ddim_steps == 10


# --- Error bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), ERROR_FIXTURES.items())
def test_error_capture_parses(name: str, expected: tuple[int, RC, set[str] | None]) -> None:
    status, rc, failing_fields = expected
    error = RequestErrorResponse.from_http(status, (REAL / name).read_bytes(), "application/json")
    assert isinstance(error, HordeResponse)
    assert error.http_status == status
    assert error.rc is rc
    assert error.message
    if failing_fields is None:
        assert error.errors is None
    else:
        assert error.errors is not None
        assert set(error.errors) == failing_fields
        assert all(field in error.message for field in failing_fields)


def test_schema_error_message_names_the_reasons() -> None:
    error = RequestErrorResponse.from_http(400, (REAL / "async_400_validation.json").read_text(), None)
    assert "500 is not a multiple of 64" in error.message
    assert error.message.startswith("Input payload validation failed")


def test_limiter_429_has_no_rc_and_says_so() -> None:
    error = RequestErrorResponse.from_http(429, (REAL / "status_429_ratelimit.json").read_bytes(), None)
    assert error.rc is RC.RC_MISSING
    assert error.is_rate_limited
    assert "10 per 1 minute" in error.message
    assert "rate limit" in error.message.lower()


def test_concurrency_429_keeps_its_rc() -> None:
    body = b'{"message": "Parallel requests exceeded", "rc": "TooManyPrompts"}'
    error = RequestErrorResponse.from_http(429, body, "application/json")
    assert error.rc is RC.TooManyPrompts
    assert error.message == "Parallel requests exceeded"


def test_echoed_api_key_is_redacted() -> None:
    raw = (REAL / "find_user_404_unknown_key.json").read_text()
    assert "aaaaaaaaaaaaaaaaaaaaaa" in raw
    error = RequestErrorResponse.from_http(404, raw, "application/json")
    assert "aaaaaaaaaaaaaaaaaaaaaa" not in error.message
    assert "api_key '***'" in error.message


def test_generic_500() -> None:
    error = RequestErrorResponse.from_http(500, b'{"message": "Internal Server Error"}', "application/json")
    assert error.rc is RC.RC_MISSING
    assert error.message == "Internal Server Error"
    assert error.http_status == 500


def test_html_proxy_page_becomes_a_short_plain_message() -> None:
    page = (
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style>"
        "<script>var x = 1;</script></head><body><h1>502 Bad Gateway</h1><p>cloudflare &amp; friends</p>"
        + "<p>padding</p>" * 200
        + "</body></html>"
    )
    error = RequestErrorResponse.from_http(502, page.encode(), "text/html; charset=utf-8")
    assert error.rc is RC.RC_MISSING
    assert error.message.startswith("HTTP 502 from the Horde (non-JSON body: 502 Bad Gateway")
    assert "cloudflare & friends" in error.message
    for leftover in ("<", ">", "color:red", "var x"):
        assert leftover not in error.message
    excerpt = error.message.removeprefix("HTTP 502 from the Horde (non-JSON body: ").removesuffix(")")
    assert len(excerpt) <= 200


def test_empty_body() -> None:
    error = RequestErrorResponse.from_http(503, b"", None)
    assert error.message == "HTTP 503 from the Horde (empty body)"
    assert error.rc is RC.RC_MISSING


def test_plain_text_and_non_object_json_bodies() -> None:
    text = RequestErrorResponse.from_http(504, "upstream timed out", "text/plain")
    assert text.message == "HTTP 504 from the Horde (non-JSON body: upstream timed out)"
    listing = RequestErrorResponse.from_http(500, b"[1, 2]", "application/json")
    assert listing.message == "HTTP 500 from the Horde (non-JSON body: [1, 2])"


def test_unknown_rc_is_kept_raw_and_missing_message_is_filled() -> None:
    error = RequestErrorResponse.from_http(400, b'{"rc": "BrandNewCode"}', "application/json")
    assert error.rc == "BrandNewCode"
    assert not isinstance(error.rc, RC)
    assert error.message == "HTTP 400 from the Horde"


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(min_value=-5, max_value=999),
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.sampled_from(["message", "rc", "errors", "x"]), children, max_size=4)
            ),
            max_leaves=10,
        ).map(json.dumps),
    ),
    content_type=st.none() | st.sampled_from(["application/json", "text/html", "text/plain"]),
)
def test_from_http_never_raises(status: int, body: bytes | str, content_type: str | None) -> None:
    error = RequestErrorResponse.from_http(status, body, content_type)
    assert isinstance(error, RequestErrorResponse)
    assert error.message
    assert error.http_status >= 0


# --- Wire placement -----------------------------------------------------------------------------


def test_image_request_sends_only_what_was_set() -> None:
    wire = ImageGenerateAsyncRequest(prompt="x").to_wire()
    assert wire == WireRequest(
        method="POST",
        path="v2/generate/async",
        headers={"apikey": ANON_API_KEY},
        query={},
        json={"prompt": "x"},
    )


def test_image_request_python_defaults_are_the_servers_and_stay_home() -> None:
    request = ImageGenerateAsyncRequest(prompt="x", params=ImageGenerationInputPayload(width=768))
    assert (request.nsfw, request.censor_nsfw, request.r2, request.slow_workers) == (True, True, True, True)
    assert request.models == ["stable_diffusion"]
    assert request.params is not None
    assert (request.params.cfg_scale, request.params.steps, request.params.karras) == (5.0, 30, True)
    assert request.to_wire().json == {"prompt": "x", "params": {"width": 768}}


def test_explicit_values_are_sent_even_when_equal_to_a_default() -> None:
    request = ImageGenerateAsyncRequest(
        prompt="x",
        nsfw=False,
        censor_nsfw=True,
        r2=True,
        params=ImageGenerationInputPayload(
            steps=30, sampler_name="k_euler", seed=42, post_processing=["GFPGAN"]
        ),
    )
    assert request.to_wire().json == {
        "prompt": "x",
        "nsfw": False,
        "censor_nsfw": True,
        "r2": True,
        "params": {"steps": 30, "sampler_name": "k_euler", "seed": "42", "post_processing": ["GFPGAN"]},
    }


def test_registered_key_goes_in_the_header_not_the_body_nor_the_repr() -> None:
    request = ImageGenerateAsyncRequest(prompt="x", apikey=KEY)
    wire = request.to_wire()
    assert wire.headers == {"apikey": KEY}
    assert wire.json is not None
    assert "apikey" not in wire.json
    assert KEY not in repr(request)
    assert KEY not in str(request)
    assert not request.is_anonymous


@pytest.mark.parametrize("bad_key", ["short", "x" * 23, "not-a-uuid-but-36-characters-long!!!"])
def test_malformed_key_is_rejected_without_echoing_it(bad_key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FindUserRequest(apikey=bad_key)
    assert bad_key not in str(caught.value)
    assert "apikey" in str(caught.value)


def test_anonymous_by_default() -> None:
    request = FindUserRequest()
    assert request.is_anonymous
    assert request.to_wire().headers == {"apikey": ANON_API_KEY}


def test_privileged_user_secrets_stay_out_of_the_repr() -> None:
    user = UserDetailsResponse.model_validate({"username": "a#1", "proxy_passkey": "s3cr3t-pass"})
    assert "s3cr3t-pass" not in repr(user)
    assert user.proxy_passkey == "s3cr3t-pass"


def test_model_count_filters_must_form_a_range() -> None:
    with pytest.raises(ValidationError, match="min_count"):
        HordeStatusModelsAllRequest(min_count=5, max_count=2)


def test_shared_key_uuid_is_accepted() -> None:
    shared = "0b6f1b52-7bb7-4a37-8b1e-2f0d1c3f9a11"
    assert FindUserRequest(apikey=shared).to_wire().headers == {"apikey": shared}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            ImageGenerateCheckRequest(id_="abc"),
            WireRequest("GET", "v2/generate/check/abc"),
        ),
        (
            ImageGenerateStatusRequest(id_="abc"),
            WireRequest("GET", "v2/generate/status/abc"),
        ),
        (
            DeleteImageGenerateRequest(id_="abc"),
            WireRequest("DELETE", "v2/generate/status/abc"),
        ),
        (
            TextGenerateStatusRequest(id_="abc"),
            WireRequest("GET", "v2/generate/text/status/abc"),
        ),
        (
            DeleteTextGenerateRequest(id_="abc"),
            WireRequest("DELETE", "v2/generate/text/status/abc"),
        ),
        (
            AlchemyStatusRequest(id_="abc", apikey=KEY),
            WireRequest("GET", "v2/interrogate/status/abc", headers={"apikey": KEY}),
        ),
        (
            AlchemyDeleteRequest(id_="abc"),
            WireRequest("DELETE", "v2/interrogate/status/abc"),
        ),
        (
            FindUserRequest(apikey=KEY),
            WireRequest("GET", "v2/find_user", headers={"apikey": KEY}),
        ),
        (
            SingleUserDetailsRequest(user_id=1),
            WireRequest("GET", "v2/users/1"),
        ),
        (
            AIHordeHeartbeatRequest(),
            WireRequest("GET", "v2/status/heartbeat"),
        ),
        (
            NewsRequest(),
            WireRequest("GET", "v2/status/news"),
        ),
        (
            HordeStatusModelsAllRequest(type_=MODEL_TYPE.text, min_count=2, model_state="known"),
            WireRequest(
                "GET", "v2/status/models", query={"type": "text", "min_count": "2", "model_state": "known"}
            ),
        ),
        (
            HordeStatusModelsAllRequest(),
            WireRequest("GET", "v2/status/models", query={"type": "image"}),
        ),
        (
            HordeStatusModelsSingleRequest(model_name="koboldcpp/LLaMA2-13B"),
            WireRequest("GET", "v2/status/models/koboldcpp%2FLLaMA2-13B"),
        ),
        (
            AllWorkersDetailsRequest(type_=WORKER_TYPE.interrogation, name="Fake Dreamer"),
            WireRequest("GET", "v2/workers", query={"type": "interrogation", "name": "Fake Dreamer"}),
        ),
        (
            SingleWorkerDetailsRequest(worker_id="w1"),
            WireRequest("GET", "v2/workers/w1"),
        ),
        (
            AllStylesImageRequest(tag="anime", page=2),
            WireRequest("GET", "v2/styles/image", query={"sort": "popular", "page": "2", "tag": "anime"}),
        ),
        (
            SingleStyleImageByNameRequest(style_name="db0#1::style::my style"),
            WireRequest("GET", "v2/styles/image_by_name/db0%231%3A%3Astyle%3A%3Amy%20style"),
        ),
    ],
)
def test_path_query_and_header_placement(request_: HordeRequest, expected: WireRequest) -> None:
    assert request_.to_wire() == expected


def test_kudos_transfer_sends_the_idempotency_key_as_a_header() -> None:
    wire = KudosTransferRequest(apikey=KEY, username="bob#2", amount=10, idempotency_key="k-1").to_wire()
    assert wire.method == "POST"
    assert wire.path == "v2/kudos/transfer"
    assert wire.headers == {"apikey": KEY, "Idempotency-Key": "k-1"}
    assert wire.json == {"username": "bob#2", "amount": 10}
    without = KudosTransferRequest(apikey=KEY, username="bob#2", amount=10).to_wire()
    assert without.headers == {"apikey": KEY}


def test_kudos_transfer_amount_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="amount"):
        KudosTransferRequest(apikey=KEY, username="bob#2", amount=0)


def test_worker_submit_sends_its_id_in_the_body() -> None:
    wire = ImageGenerationJobSubmitRequest(apikey=KEY, id_="j1", generation="R2", seed=3).to_wire()
    assert wire.path == "v2/generate/submit"
    assert wire.json == {"id": "j1", "generation": "R2", "seed": 3}


def test_text_and_alchemy_bodies() -> None:
    text = TextGenerateAsyncRequest(
        prompt="Once", params=ModelGenerationInputKobold(max_length=64), models=["m"]
    ).to_wire()
    assert (text.method, text.path) == ("POST", "v2/generate/text/async")
    assert text.json == {"prompt": "Once", "params": {"max_length": 64}, "models": ["m"]}
    alchemy = AlchemyAsyncRequest(
        apikey=KEY,
        forms=[AlchemyAsyncRequestFormItem(name=KNOWN_ALCHEMY_TYPES.RealESRGAN_x2plus)],
        source_image="https://example.org/a.webp",
    ).to_wire()
    assert (alchemy.path, alchemy.headers) == ("v2/interrogate/async", {"apikey": KEY})
    assert alchemy.json == {
        "forms": [{"name": "RealESRGAN_x2plus"}],
        "source_image": "https://example.org/a.webp",
    }


# --- Follow-ups and response types -------------------------------------------------------------


def test_async_requests_name_and_build_their_follow_ups() -> None:
    image = ImageGenerateAsyncRequest(prompt="x", params=ImageGenerationInputPayload(n=3))
    assert image.check_request_type is ImageGenerateCheckRequest
    assert image.status_request_type is ImageGenerateStatusRequest
    assert image.cleanup_request_type is DeleteImageGenerateRequest
    assert image.build_check_request("g1") == ImageGenerateCheckRequest(id_="g1")
    assert image.build_cleanup_request("g1").to_wire() == WireRequest("DELETE", "v2/generate/status/g1")
    assert image.get_number_of_results_expected() == 3

    text = TextGenerateAsyncRequest(prompt="x")
    assert text.build_check_request("t1") == TextGenerateStatusRequest(id_="t1")
    assert isinstance(text.build_cleanup_request("t1"), DeleteTextGenerateRequest)
    assert text.get_number_of_results_expected() == 1


def test_alchemy_follow_ups_carry_the_key() -> None:
    request = AlchemyAsyncRequest(
        apikey=KEY,
        forms=[AlchemyAsyncRequestFormItem(name="caption"), AlchemyAsyncRequestFormItem(name="caption")],
        source_image="abc",
    )
    assert request.build_status_request("a1") == AlchemyStatusRequest(id_="a1", apikey=KEY)
    assert request.build_cleanup_request("a1").to_wire().headers == {}
    assert request.get_number_of_results_expected() == 1  # the server drops duplicate forms


def test_success_types() -> None:
    assert ImageGenerateAsyncRequest.get_default_success_response_type() is ImageGenerateAsyncResponse
    assert ImageGenerateAsyncRequest.get_success_status_response_pairs() == {
        200: ImageGenerateAsyncDryRunResponse,
        202: ImageGenerateAsyncResponse,
    }
    assert TextGenerateAsyncRequest.get_success_status_response_pairs() == {
        200: TextGenerateAsyncDryRunResponse,
        202: TextGenerateAsyncResponse,
    }
    assert AlchemyAsyncRequest.get_success_status_response_pairs() == {202: AlchemyAsyncResponse}
    assert DeleteImageGenerateRequest.get_default_success_response_type() is ImageGenerateStatusResponse
    assert AlchemyDeleteRequest.get_default_success_response_type() is AlchemyStatusResponse
    assert FindUserRequest.get_success_status_response_pairs() == {200: UserDetailsResponse}
    assert SingleWorkerDetailsRequest.get_default_success_response_type() is WorkerDetailsResponse


# --- Aliases, freezing, leniency ---------------------------------------------------------------


def test_id_alias_works_both_ways() -> None:
    fields = {"img": "https://x/y.webp", "seed": "1", "worker_id": "w", "worker_name": "n", "model": "m"}
    by_alias = ImageGeneration.model_validate({"id": "g", **fields})
    by_name = ImageGeneration(id_="g", **fields)
    assert by_alias == by_name
    assert by_name.model_dump(by_alias=True)["id"] == "g"
    assert "id_" in by_name.model_dump()


def test_type_alias_works_both_ways() -> None:
    entry = GenMetadataEntry.model_validate({"type": "censorship", "value": "nsfw"})
    assert entry.type_ is METADATA_TYPE.censorship
    assert GenMetadataEntry(type_="lora", value="download_failed").model_dump(by_alias=True)["type"] == "lora"
    models = HordeStatusModelsAllResponse.model_validate([{"name": "m", "count": 2, "type": "text"}])
    assert models.root[0].type_ is MODEL_TYPE.text


def test_censorship_metadata_marks_a_generation_censored() -> None:
    generation = ImageGeneration.model_validate(
        {
            "id": "g",
            "img": "x",
            "seed": "1",
            "censored": True,
            "gen_metadata": [{"type": "censorship", "value": "nsfw"}],
        }
    )
    assert generation.is_censored


def test_models_are_frozen() -> None:
    request = ImageGenerateAsyncRequest(prompt="x")
    with pytest.raises(ValidationError, match="frozen"):
        request.prompt = "y"  # type: ignore[misc]
    response = ImageGenerateCheckResponse.model_validate(_raw("11_img_check.json"))
    with pytest.raises(ValidationError, match="frozen"):
        response.done = True  # type: ignore[misc]


def test_requests_reject_unknown_fields_and_responses_keep_them() -> None:
    with pytest.raises(ValidationError, match="censor_nsfwx"):
        ImageGenerateAsyncRequest.model_validate({"prompt": "x", "censor_nsfwx": True})
    response = KudosTransferResponse.model_validate({"transferred": 1, "new_field": "kept"})
    assert response.model_extra == {"new_field": "kept"}


def test_unknown_enum_values_from_a_newer_server_are_kept_raw() -> None:
    status = AlchemyStatusResponse.model_validate(
        {"state": "brand_new", "forms": [{"form": "new_form", "state": "done", "result": {"new_form": 1}}]}
    )
    assert status.state == "brand_new"
    assert status.forms[0].form == "new_form"
    assert not status.is_final


def test_null_lists_read_as_empty() -> None:
    status = ImageGenerateStatusResponse.model_validate({**_raw("delete_200.json"), "generations": None})
    assert status.generations == []


def test_root_responses_are_horde_responses() -> None:
    news = NewsResponse.model_validate(_raw("news_200.json"))
    assert isinstance(news, HordeResponse)
    assert news.root[0].title


# --- Progress and alchemy helpers --------------------------------------------------------------


def _check(**overrides: Any) -> ImageGenerateCheckResponse:
    return ImageGenerateCheckResponse.model_validate({**_raw("11_img_check.json"), **overrides})


def test_check_final_and_faulted() -> None:
    assert not _check().is_final
    assert _check(done=True).is_final
    faulted = _check(done=True, faulted=True)
    assert faulted.is_final
    assert faulted.is_faulted
    assert not _check(done=True).is_faulted


def _form(form: str, state: str, result: dict[str, Any] | None) -> dict[str, Any]:
    return {"form": form, "state": state, "result": result}


def test_alchemy_results_by_kind() -> None:
    tags = {"tags": [{"text": "cube", "confidence": 0.9}], "sites": [], "artists": []}
    status = AlchemyStatusResponse.model_validate(
        {
            "state": "partial",
            "forms": [
                _form("caption", "done", {"caption": "a cube"}),
                _form("nsfw", "done", {"nsfw": False}),
                _form("interrogation", "done", {"interrogation": tags}),
                _form("RealESRGAN_x2plus", "done", {"RealESRGAN_x2plus": "https://r2/up.webp"}),
                _form("4x_AnimeSharp", "done", {"4x_AnimeSharp": "https://r2/anime.webp"}),
                _form("CodeFormers", "done", {"CodeFormers": "https://r2/face.webp"}),
                _form("strip_background", "done", {"strip_background": "https://r2/nobg.webp"}),
                _form("palette", "done", {"palette": ["#ff0000"]}),
                _form("GFPGAN", "cancelled", None),
                _form("caption", "processing", None),
                _form("describe", "faulted", None),
                _form("nsfw", "done", {"nsfw": "not a bool"}),
            ],
        }
    )
    assert [r.caption for r in status.all_caption_results] == ["a cube"]
    assert [r.nsfw for r in status.all_nsfw_results] == [False]
    assert [t.text for t in status.all_interrogation_results[0].tags] == ["cube"]
    assert [(r.upscaler_used, r.url) for r in status.all_upscale_results] == [
        (KNOWN_UPSCALERS.RealESRGAN_x2plus, "https://r2/up.webp"),
        (KNOWN_UPSCALERS.four_4x_AnimeSharp, "https://r2/anime.webp"),
    ]
    assert [(r.facefixer_used, r.url) for r in status.all_facefix_results] == [
        (KNOWN_FACEFIXERS.CodeFormers, "https://r2/face.webp")
    ]
    assert [r.url for r in status.all_strip_background_results] == ["https://r2/nobg.webp"]
    assert [r.value for r in status.all_palette_results] == [["#ff0000"]]
    assert status.all_describe_results == []
    assert status.all_vectorize_results == []
    assert status.is_final
    assert not status.is_faulted
    assert not status.is_job_complete(1)


def test_alchemy_completion_and_fault() -> None:
    done = AlchemyStatusResponse.model_validate(
        {"state": "done", "forms": [_form("caption", "done", {"caption": "c"})]}
    )
    assert done.is_job_complete(1)
    assert not done.is_job_complete(2)
    faulted = AlchemyStatusResponse.model_validate(
        {"state": "faulted", "forms": [_form("caption", "faulted", None)]}
    )
    assert faulted.is_final
    assert faulted.is_faulted
    assert not faulted.is_job_complete(1)
    waiting = AlchemyStatusResponse.model_validate({"state": "waiting", "forms": []})
    assert not waiting.is_final


# --- Bounds: named server checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"width": 100}, "width", "multiple of 64"),
        ({"height": 3136}, "height", "less than or equal to 3072"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"n": 21}, "n", "less than or equal to 20"),
        ({"cfg_scale": 7.555}, "cfg_scale", "BadCFGDecimals"),
        ({"clip_skip": 13}, "clip_skip", "less than or equal to 12"),
        ({"denoising_strength": 0.0}, "denoising_strength", "greater than or equal to 0.01"),
        ({"sampler_name": "k_nope"}, "sampler_name", "k_euler"),
        ({"loras": [{"name": str(i)} for i in range(6)]}, "loras", "TooManyLoras"),
        ({"tis": [{"name": str(i)} for i in range(21)]}, "tis", "TooManyTIs"),
        ({"post_processing": ["RealESRGAN_x2plus", "4x_AnimeSharp"]}, "post_processing", "TooManyUpscalers"),
        ({"post_processing": ["GFPGAN", "GFPGAN"]}, "post_processing", "twice"),
        ({"post_processing": ["Nope"]}, "post_processing", "GFPGAN"),
    ],
)
def test_image_payload_rejects(params: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ImageGenerationInputPayload.model_validate(params)
    assert field in str(caught.value)
    assert reason in str(caught.value)


def test_one_upscaler_with_face_fixers_is_fine() -> None:
    payload = ImageGenerationInputPayload(
        post_processing=[KNOWN_POST_PROCESSORS.RealESRGAN_x2plus, "GFPGAN", "CodeFormers", "strip_background"]
    )
    assert len(payload.post_processing) == 4


def test_lora_and_ti_entries() -> None:
    with pytest.raises(ValidationError, match="BadLoraVersion"):
        LorasPayloadEntry(name="Magnagothica", is_version=True)
    assert LorasPayloadEntry(name="247778", is_version=True).is_version
    with pytest.raises(ValidationError, match="less than or equal to 5"):
        LorasPayloadEntry(name="x", model=5.5)
    with pytest.raises(ValidationError, match="inject_ti"):
        TIPayloadEntry.model_validate({"name": "x", "inject_ti": "everywhere"})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "word " * 7501}, "InvalidPromptSize"),
        ({"prompt": "x", "source_mask": "m"}, "SourceMaskUnnecessary"),
        ({"prompt": "x", "params": {"control_type": "canny"}}, "ControlNetSourceMissing"),
        ({"prompt": "x", "models": ["RealESRGAN_x2plus"]}, "UnexpectedModelName"),
        ({"prompt": "x", "webhook": "http://example.org/hook"}, "https"),
        ({"prompt": "x", "extra_source_images": [{"image": "a"}] * 6}, "TooManyExtraSourceImages"),
        ({"prompt": "x", "source_processing": "txt2img"}, "source_processing"),
    ],
)
def test_image_request_rejects(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ImageGenerateAsyncRequest.model_validate(fields)


def test_controlnet_with_a_source_image_is_fine() -> None:
    request = ImageGenerateAsyncRequest(
        prompt="x", source_image="abc", params=ImageGenerationInputPayload(control_type="canny")
    )
    assert request.params is not None
    assert request.params.control_type == "canny"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"max_length": 200, "max_context_length": 100}, "TokenOverflow"),
        ({"max_context_length": 80, "max_length": 81}, "TokenOverflow"),
        ({"sampler_order": [0, 1, 2, 3, 4, 5, 5]}, "MissingFullSamplerOrder"),
        ({"stop_sequence": [f"s{i}" for i in range(129)]}, "TooManyStopSequences"),
        ({"stop_sequence": ["a" * 1001, "b" * 1000]}, "ExcessiveStopSequence"),
    ],
)
def test_text_payload_rejects(params: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ModelGenerationInputKobold.model_validate(params)


def test_text_payload_follows_the_server_not_the_sdk() -> None:
    # horde_sdk caps these at 1024 / 32000 / 100; the server allows more.
    params = ModelGenerationInputKobold(max_length=4096, max_context_length=1_048_576, top_k=200)
    assert params.max_length == 4096
    assert ModelGenerationInputKobold(sampler_order=[6, 0, 1, 3, 4, 2, 5]).sampler_order is not None
    assert ModelGenerationInputKobold(stop_sequence=["x"] * 200).stop_sequence is not None  # counted once
    assert ModelGenerationInputKobold(max_context_length=80).max_length == 80  # the default fits


# --- Bounds: every numeric bound of swagger.json, by property ----------------------------------


def _properties(name: str) -> dict[str, Any]:
    definition = SWAGGER["definitions"][name]
    merged: dict[str, Any] = {}
    for part in definition.get("allOf", [definition]):
        if "$ref" in part:
            merged.update(_properties(part["$ref"].rsplit("/", 1)[1]))
        else:
            merged.update(part.get("properties", {}))
    return merged


def _bounded(definition: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, spec)
        for name, spec in _properties(definition).items()
        if spec.get("type") in ("integer", "number") and ("minimum" in spec or "maximum" in spec)
    ]


IMAGE_BOUNDS = _bounded("ModelGenerationInputStable")
TEXT_BOUNDS = _bounded("ModelGenerationInputKobold")
# Keeps TokenOverflow out of the way while one of the pair is being tested.
TEXT_COMPANIONS: dict[str, dict[str, int]] = {
    "max_length": {"max_context_length": 1_048_576},
    "max_context_length": {"max_length": 16},
}


def test_swagger_bounds_are_all_covered() -> None:
    assert {name for name, _ in IMAGE_BOUNDS} == {
        "steps", "n", "width", "height", "cfg_scale", "denoising_strength", "hires_fix_denoising_strength",
        "clip_skip", "facefixer_strength", "seed_variation",
    }  # fmt: skip
    assert {name for name, _ in TEXT_BOUNDS} == {
        "n", "max_context_length", "max_length", "rep_pen", "rep_pen_range", "rep_pen_slope", "temperature",
        "tfs", "top_a", "top_k", "top_p", "typical", "min_p", "smoothing_factor", "dynatemp_range",
        "dynatemp_exponent",
    }  # fmt: skip


def _in_range(spec: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    low, high = spec["minimum"], spec["maximum"]
    if "multipleOf" in spec:
        step = spec["multipleOf"]
        return st.integers(-(-low // step), high // step).map(lambda k: k * step)
    if spec["type"] == "integer":
        return st.integers(low, high)
    if name == "cfg_scale":  # at most two decimals
        return st.integers(round(low * 100), round(high * 100)).map(lambda c: c / 100)
    return st.floats(low, high, allow_nan=False)


def _out_of_range(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = spec["minimum"], spec["maximum"]
    if spec["type"] == "integer":
        outside = st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
        if "multipleOf" in spec:
            step = spec["multipleOf"]
            off_step = st.integers(low, high).filter(lambda v: v % step != 0)
            return outside | off_step
        return outside
    return st.floats(max_value=low, exclude_max=True, allow_nan=False) | st.floats(
        min_value=high, exclude_min=True, allow_nan=False
    )


def _check_bound(model: Any, name: str, value: Any, extra: dict[str, Any], *, ok: bool) -> None:
    data = {**extra, name: value}
    if ok:
        assert getattr(model.model_validate(data), name) == value
    else:
        with pytest.raises(ValidationError) as caught:
            model.model_validate(data)
        assert name in str(caught.value)


@pytest.mark.parametrize(("name", "spec"), IMAGE_BOUNDS, ids=[name for name, _ in IMAGE_BOUNDS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_image_payload_bounds(name: str, spec: dict[str, Any], data: st.DataObject) -> None:
    _check_bound(ImageGenerationInputPayload, name, data.draw(_in_range(spec, name)), {}, ok=True)
    _check_bound(ImageGenerationInputPayload, name, data.draw(_out_of_range(spec)), {}, ok=False)


@pytest.mark.parametrize(("name", "spec"), TEXT_BOUNDS, ids=[name for name, _ in TEXT_BOUNDS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_text_payload_bounds(name: str, spec: dict[str, Any], data: st.DataObject) -> None:
    extra = TEXT_COMPANIONS.get(name, {})
    _check_bound(ModelGenerationInputKobold, name, data.draw(_in_range(spec, name)), extra, ok=True)
    _check_bound(ModelGenerationInputKobold, name, data.draw(_out_of_range(spec)), extra, ok=False)


@pytest.mark.parametrize(("name", "spec"), _bounded("ModelPayloadLorasStable"))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_lora_bounds(name: str, spec: dict[str, Any], data: st.DataObject) -> None:
    _check_bound(LorasPayloadEntry, name, data.draw(_in_range(spec, name)), {"name": "x"}, ok=True)
    _check_bound(LorasPayloadEntry, name, data.draw(_out_of_range(spec)), {"name": "x"}, ok=False)


@settings(max_examples=100, deadline=None)
@given(cfg=st.floats(0, 100, allow_nan=False))
def test_cfg_scale_accepts_exactly_two_decimal_values(cfg: float) -> None:
    if round(cfg, 2) == cfg:
        assert ImageGenerationInputPayload(cfg_scale=cfg).cfg_scale == cfg
    else:
        with pytest.raises(ValidationError, match="BadCFGDecimals"):
            ImageGenerationInputPayload(cfg_scale=cfg)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 12))
def test_lora_count_bound(count: int) -> None:
    loras = [{"name": f"l{i}"} for i in range(count)]
    if count <= 5:
        assert len(ImageGenerationInputPayload.model_validate({"loras": loras}).loras) == count
    else:
        with pytest.raises(ValidationError, match="TooManyLoras"):
            ImageGenerationInputPayload.model_validate({"loras": loras})


@settings(max_examples=60, deadline=None)
@given(chosen=st.lists(st.sampled_from(sorted(KNOWN_POST_PROCESSORS)), unique=True))
def test_at_most_one_upscaler(chosen: list[KNOWN_POST_PROCESSORS]) -> None:
    upscalers = [name for name in chosen if name.value in {u.value for u in KNOWN_UPSCALERS}]
    if len(upscalers) <= 1:
        assert ImageGenerationInputPayload(post_processing=chosen).post_processing == chosen
    else:
        with pytest.raises(ValidationError, match="TooManyUpscalers"):
            ImageGenerationInputPayload(post_processing=chosen)


def test_payload_defaults_sit_inside_the_bounds() -> None:
    image = ImageGenerationInputPayload()
    text = ModelGenerationInputKobold()
    for model, bounds in ((image, IMAGE_BOUNDS), (text, TEXT_BOUNDS)):
        for name, spec in bounds:
            value = getattr(model, name)
            if value is not None:
                assert spec["minimum"] <= value <= spec["maximum"], name
