"""Constants of the AI Horde API v2 (server 5.1.5, API 2.5).

Enum values are the server's spellings (swagger.json); member names follow horde_sdk. Names that
are not Python identifiers get a spelled-out prefix (``four_4x_AnimeSharp`` is ``"4x_AnimeSharp"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

ANON_API_KEY: Final = "0000000000"
DEFAULT_BASE_URL: Final = "https://aihorde.net/api/"
BASE_URL_ENV_VAR: Final = "AI_HORDE_URL"

DEFAULT_CLIENT_AGENT: Final = "horde-discord-bot:0.1.0:https://github.com/horde-discord-bot"
"""``name:version:contact``, sent as the ``Client-Agent`` header."""

APIKEY_HEADER: Final = "apikey"
CLIENT_AGENT_HEADER: Final = "Client-Agent"
"""With a hyphen: horde_sdk sends ``client_agent``, which proxies drop."""
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"

GENERATION_MAX_LIFE: Final = 20 * 60 - 30
"""Seconds a request lives on the server after its last activity, less 30 s of network slack."""

MAX_LORAS: Final = 5
MAX_TIS: Final = 20
MAX_UPSCALERS: Final = 1
MAX_EXTRA_SOURCE_IMAGES: Final = 5
MAX_PROMPT_WORDS: Final = 7500
MAX_STOP_SEQUENCES: Final = 128
MAX_STOP_SEQUENCE_CHARS: Final = 2000
TEXT_SAMPLER_COUNT: Final = 7
"""A custom ``sampler_order`` must name this many distinct samplers."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``calls`` calls in any window of ``period_s`` seconds."""

    calls: int
    period_s: float

    def __post_init__(self) -> None:
        if self.calls < 1 or self.period_s <= 0:
            raise ValueError("a rate limit needs calls >= 1 and period_s > 0")

    @property
    def min_interval_s(self) -> float:
        """The spacing that keeps a steady stream of calls under the limit."""
        return self.period_s / self.calls


# The server's limits (horde-api.md §2). "Per id" limits are keyed by IP, method and path, so
# every generation id has its own bucket.
CHECK_RATE_LIMIT_PER_ID: Final = RateLimit(10, 1.0)
IMAGE_STATUS_RATE_LIMIT_PER_ID: Final = RateLimit(10, 60.0)
TEXT_STATUS_RATE_LIMIT_PER_ID: Final = RateLimit(60, 60.0)
ALCHEMY_STATUS_RATE_LIMIT_PER_ID: Final = RateLimit(10, 1.0)
ASYNC_RATE_LIMIT_PER_KEY: Final = RateLimit(2, 1.0)
"""Image and text ``async`` per registered API key."""
ASYNC_RATE_LIMIT_PER_ANON_KEY: Final = RateLimit(60, 1.0)
"""Image and text ``async`` for the shared anonymous key (or a whitelisted IP)."""
ASYNC_RATE_LIMIT_PER_IP: Final = RateLimit(2, 1.0)
ASYNC_RATE_LIMIT_PER_IP_MINUTE: Final = RateLimit(90, 60.0)
ASYNC_RATE_LIMITS_PER_IP: Final = (ASYNC_RATE_LIMIT_PER_IP, ASYNC_RATE_LIMIT_PER_IP_MINUTE)
"""Both hold at once for image and text ``async``."""
KUDOS_TRANSFER_RATE_LIMIT: Final = RateLimit(1, 1.0)
KUDOS_TRANSFER_RATE_LIMIT_HOURLY: Final = RateLimit(90, 3600.0)
KUDOS_TRANSFER_RATE_LIMITS: Final = (KUDOS_TRANSFER_RATE_LIMIT, KUDOS_TRANSFER_RATE_LIMIT_HOURLY)
"""Both hold at once, per API key."""
USER_DETAILS_RATE_LIMIT_PER_ID: Final = RateLimit(60, 60.0)
DEFAULT_RATE_LIMIT: Final = RateLimit(90, 60.0)
"""Every other endpoint (interrogate/async, find_user, status/models, workers, news, styles…)."""
RATE_LIMIT_EXEMPT_PATHS: Final = frozenset({"v2/status/heartbeat"})


class KNOWN_IMAGE_SAMPLERS(StrEnum):
    k_lms = "k_lms"
    k_heun = "k_heun"
    k_euler = "k_euler"
    k_euler_a = "k_euler_a"
    k_dpm_2 = "k_dpm_2"
    k_dpm_2_a = "k_dpm_2_a"
    k_dpm_fast = "k_dpm_fast"
    k_dpm_adaptive = "k_dpm_adaptive"
    k_dpmpp_2s_a = "k_dpmpp_2s_a"
    k_dpmpp_2m = "k_dpmpp_2m"
    dpmsolver = "dpmsolver"
    k_dpmpp_sde = "k_dpmpp_sde"
    DDIM = "DDIM"
    lcm = "lcm"


class KNOWN_UPSCALERS(StrEnum):
    RealESRGAN_x4plus = "RealESRGAN_x4plus"
    RealESRGAN_x2plus = "RealESRGAN_x2plus"
    RealESRGAN_x4plus_anime_6B = "RealESRGAN_x4plus_anime_6B"
    NMKD_Siax = "NMKD_Siax"
    four_4x_AnimeSharp = "4x_AnimeSharp"
    four_4xNomos8kSC = "4xNomos8kSC"
    four_4xLSDIRplus = "4xLSDIRplus"
    four_4xNomosWebPhoto_RealPLKSR = "4xNomosWebPhoto_RealPLKSR"
    four_4xNomos2_realplksr_dysample = "4xNomos2_realplksr_dysample"
    four_4xNomos2_hq_dat2 = "4xNomos2_hq_dat2"
    two_2xModernSpanimationV1 = "2xModernSpanimationV1"


class KNOWN_FACEFIXERS(StrEnum):
    GFPGAN = "GFPGAN"
    CodeFormers = "CodeFormers"
    GFPGANv1_3 = "GFPGANv1.3"
    RestoreFormer = "RestoreFormer"


class KNOWN_MISC_POST_PROCESSORS(StrEnum):
    strip_background = "strip_background"


class KNOWN_POST_PROCESSORS(StrEnum):
    """Every name accepted in ``params.post_processing``: upscalers, face fixers and the rest."""

    RealESRGAN_x4plus = KNOWN_UPSCALERS.RealESRGAN_x4plus.value
    RealESRGAN_x2plus = KNOWN_UPSCALERS.RealESRGAN_x2plus.value
    RealESRGAN_x4plus_anime_6B = KNOWN_UPSCALERS.RealESRGAN_x4plus_anime_6B.value
    NMKD_Siax = KNOWN_UPSCALERS.NMKD_Siax.value
    four_4x_AnimeSharp = KNOWN_UPSCALERS.four_4x_AnimeSharp.value
    four_4xNomos8kSC = KNOWN_UPSCALERS.four_4xNomos8kSC.value
    four_4xLSDIRplus = KNOWN_UPSCALERS.four_4xLSDIRplus.value
    four_4xNomosWebPhoto_RealPLKSR = KNOWN_UPSCALERS.four_4xNomosWebPhoto_RealPLKSR.value
    four_4xNomos2_realplksr_dysample = KNOWN_UPSCALERS.four_4xNomos2_realplksr_dysample.value
    four_4xNomos2_hq_dat2 = KNOWN_UPSCALERS.four_4xNomos2_hq_dat2.value
    two_2xModernSpanimationV1 = KNOWN_UPSCALERS.two_2xModernSpanimationV1.value
    GFPGAN = KNOWN_FACEFIXERS.GFPGAN.value
    CodeFormers = KNOWN_FACEFIXERS.CodeFormers.value
    GFPGANv1_3 = KNOWN_FACEFIXERS.GFPGANv1_3.value
    RestoreFormer = KNOWN_FACEFIXERS.RestoreFormer.value
    strip_background = KNOWN_MISC_POST_PROCESSORS.strip_background.value


class KNOWN_CLIP_BLIP_TYPES(StrEnum):
    caption = "caption"
    interrogation = "interrogation"
    nsfw = "nsfw"


class KNOWN_ALCHEMY_TYPES(StrEnum):
    """Every alchemy form name: the analysis forms plus every post-processor."""

    caption = KNOWN_CLIP_BLIP_TYPES.caption.value
    interrogation = KNOWN_CLIP_BLIP_TYPES.interrogation.value
    nsfw = KNOWN_CLIP_BLIP_TYPES.nsfw.value
    vectorize = "vectorize"
    palette = "palette"
    describe = "describe"
    aesthetic = "aesthetic"
    RealESRGAN_x4plus = KNOWN_POST_PROCESSORS.RealESRGAN_x4plus.value
    RealESRGAN_x2plus = KNOWN_POST_PROCESSORS.RealESRGAN_x2plus.value
    RealESRGAN_x4plus_anime_6B = KNOWN_POST_PROCESSORS.RealESRGAN_x4plus_anime_6B.value
    NMKD_Siax = KNOWN_POST_PROCESSORS.NMKD_Siax.value
    four_4x_AnimeSharp = KNOWN_POST_PROCESSORS.four_4x_AnimeSharp.value
    fourx_AnimeSharp = KNOWN_POST_PROCESSORS.four_4x_AnimeSharp.value  # horde_sdk's spelling
    four_4xNomos8kSC = KNOWN_POST_PROCESSORS.four_4xNomos8kSC.value
    four_4xLSDIRplus = KNOWN_POST_PROCESSORS.four_4xLSDIRplus.value
    four_4xNomosWebPhoto_RealPLKSR = KNOWN_POST_PROCESSORS.four_4xNomosWebPhoto_RealPLKSR.value
    four_4xNomos2_realplksr_dysample = KNOWN_POST_PROCESSORS.four_4xNomos2_realplksr_dysample.value
    four_4xNomos2_hq_dat2 = KNOWN_POST_PROCESSORS.four_4xNomos2_hq_dat2.value
    two_2xModernSpanimationV1 = KNOWN_POST_PROCESSORS.two_2xModernSpanimationV1.value
    GFPGAN = KNOWN_POST_PROCESSORS.GFPGAN.value
    CodeFormers = KNOWN_POST_PROCESSORS.CodeFormers.value
    GFPGANv1_3 = KNOWN_POST_PROCESSORS.GFPGANv1_3.value
    RestoreFormer = KNOWN_POST_PROCESSORS.RestoreFormer.value
    strip_background = KNOWN_POST_PROCESSORS.strip_background.value


class KNOWN_CONTROL_TYPES(StrEnum):
    canny = "canny"
    hed = "hed"
    depth = "depth"
    normal = "normal"
    openpose = "openpose"
    seg = "seg"
    scribble = "scribble"
    fakescribbles = "fakescribbles"
    hough = "hough"


class KNOWN_SOURCE_PROCESSING(StrEnum):
    img2img = "img2img"
    inpainting = "inpainting"
    outpainting = "outpainting"
    remix = "remix"


class KNOWN_WORKFLOWS(StrEnum):
    qr_code = "qr_code"


class TI_INJECT(StrEnum):
    prompt = "prompt"
    negprompt = "negprompt"


class GENERATION_STATE(StrEnum):
    """States of a generation, an alchemy form or a whole alchemy request."""

    ok = "ok"
    censored = "censored"
    faulted = "faulted"
    csam = "csam"
    waiting = "waiting"
    processing = "processing"
    partial = "partial"
    cancelled = "cancelled"
    done = "done"


class METADATA_TYPE(StrEnum):
    lora = "lora"
    ti = "ti"
    censorship = "censorship"
    source_image = "source_image"
    source_mask = "source_mask"
    extra_source_images = "extra_source_images"
    batch_index = "batch_index"
    information = "information"
    aesthetic_score = "aesthetic_score"


class METADATA_VALUE(StrEnum):
    download_failed = "download_failed"
    parse_failed = "parse_failed"
    baseline_mismatch = "baseline_mismatch"
    csam = "csam"
    nsfw = "nsfw"
    see_ref = "see_ref"


class WarningCode(StrEnum):
    NoAvailableWorker = "NoAvailableWorker"
    ClipSkipMismatch = "ClipSkipMismatch"
    StepsTooFew = "StepsTooFew"
    StepsTooMany = "StepsTooMany"
    CfgScaleMismatch = "CfgScaleMismatch"
    CfgScaleTooSmall = "CfgScaleTooSmall"
    CfgScaleTooLarge = "CfgScaleTooLarge"
    SamplerMismatch = "SamplerMismatch"
    SchedulerMismatch = "SchedulerMismatch"


class WORKER_TYPE(StrEnum):
    image = "image"
    text = "text"
    interrogation = "interrogation"


class MODEL_TYPE(StrEnum):
    image = "image"
    text = "text"


class MODEL_STATE(StrEnum):
    known = "known"
    custom = "custom"
    all = "all"


class STYLE_SORT(StrEnum):
    popular = "popular"
    age = "age"


class RC(StrEnum):
    """Every return code the Horde sends in ``rc`` (``KNOWN_RC`` and README_return_codes.md).

    ``RC_MISSING`` stands for an error body without an ``rc`` (schema errors, the limiter's 429,
    a generic 500, or a body that is not JSON at all).
    """

    RC_MISSING = "RC_MISSING"
    MissingPrompt = "MissingPrompt"
    CorruptPrompt = "CorruptPrompt"
    KudosValidationError = "KudosValidationError"
    NoValidActions = "NoValidActions"
    InvalidSize = "InvalidSize"
    InvalidPromptSize = "InvalidPromptSize"
    InvalidPromptEncoding = "InvalidPromptEncoding"
    TooManySteps = "TooManySteps"
    Profanity = "Profanity"
    ProfaneWorkerName = "ProfaneWorkerName"
    ProfaneBridgeAgent = "ProfaneBridgeAgent"
    ProfaneWorkerInfo = "ProfaneWorkerInfo"
    ProfaneUserName = "ProfaneUserName"
    ProfaneUserContact = "ProfaneUserContact"
    ProfaneAdminComment = "ProfaneAdminComment"
    ProfaneTeamName = "ProfaneTeamName"
    ProfaneTeamInfo = "ProfaneTeamInfo"
    TooLong = "TooLong"
    TooLongWorkerName = "TooLongWorkerName"
    TooLongUserName = "TooLongUserName"
    NameAlreadyExists = "NameAlreadyExists"
    WorkerNameAlreadyExists = "WorkerNameAlreadyExists"
    TeamNameAlreadyExists = "TeamNameAlreadyExists"
    PolymorphicNameConflict = "PolymorphicNameConflict"
    ImageValidationFailed = "ImageValidationFailed"
    SourceImageResolutionExceeded = "SourceImageResolutionExceeded"
    SourceImageSizeExceeded = "SourceImageSizeExceeded"
    SourceImageUrlInvalid = "SourceImageUrlInvalid"
    SourceImageUnreadable = "SourceImageUnreadable"
    InpaintingMissingMask = "InpaintingMissingMask"
    SourceMaskUnnecessary = "SourceMaskUnnecessary"
    UnsupportedSampler = "UnsupportedSampler"
    UnsupportedModel = "UnsupportedModel"
    ControlNetUnsupported = "ControlNetUnsupported"
    ControlNetSourceMissing = "ControlNetSourceMissing"
    ControlNetInvalidPayload = "ControlNetInvalidPayload"
    ControlNetInpaintingMismatch = "ControlNetInpaintingMismatch"
    SourceImageRequiredForModel = "SourceImageRequiredForModel"
    UnexpectedModelName = "UnexpectedModelName"
    TooManyUpscalers = "TooManyUpscalers"
    ProcGenNotFound = "ProcGenNotFound"
    InvalidAestheticAttempt = "InvalidAestheticAttempt"
    AestheticsNotCompleted = "AestheticsNotCompleted"
    AestheticsNotPublic = "AestheticsNotPublic"
    AestheticsDuplicate = "AestheticsDuplicate"
    AestheticsMissing = "AestheticsMissing"
    AestheticsSolo = "AestheticsSolo"
    AestheticsConfused = "AestheticsConfused"
    AestheticsAlreadyExist = "AestheticsAlreadyExist"
    AestheticsServerRejected = "AestheticsServerRejected"
    AestheticsServerError = "AestheticsServerError"
    AestheticsServerDown = "AestheticsServerDown"
    AestheticsServerTimeout = "AestheticsServerTimeout"
    InvalidAPIKey = "InvalidAPIKey"
    WrongCredentials = "WrongCredentials"
    NotAdmin = "NotAdmin"
    NotModerator = "NotModerator"
    NotOwner = "NotOwner"
    NotPrivileged = "NotPrivileged"
    AnonForbidden = "AnonForbidden"
    AnonForbiddenWorker = "AnonForbiddenWorker"
    AnonForbiddenUserMod = "AnonForbiddenUserMod"
    NotTrusted = "NotTrusted"
    UntrustedTeamCreation = "UntrustedTeamCreation"
    UntrustedUnsafeIP = "UntrustedUnsafeIP"
    WorkerMaintenance = "WorkerMaintenance"
    WorkerFlaggedMaintenance = "WorkerFlaggedMaintenance"
    TooManySameIPs = "TooManySameIPs"
    TooManyWorkers = "TooManyWorkers"
    TooManyWorkersTrusted = "TooManyWorkersTrusted"
    WorkerInviteOnly = "WorkerInviteOnly"
    UnsafeIP = "UnsafeIP"
    TimeoutIP = "TimeoutIP"
    TooManyNewIPs = "TooManyNewIPs"
    KudosUpfront = "KudosUpfront"
    SharedKeyInvalid = "SharedKeyInvalid"
    SharedKeyEmpty = "SharedKeyEmpty"
    SharedKeyExpired = "SharedKeyExpired"
    SharedKeyInsufficientKudos = "SharedKeyInsufficientKudos"
    SharedKeyAssignedStyles = "SharedKeyAssignedStyles"
    InvalidJobID = "InvalidJobID"
    RequestNotFound = "RequestNotFound"
    WorkerNotFound = "WorkerNotFound"
    TeamNotFound = "TeamNotFound"
    FilterNotFound = "FilterNotFound"
    UserNotFound = "UserNotFound"
    StyleNotFound = "StyleNotFound"
    ThingNotFound = "ThingNotFound"
    DuplicateGen = "DuplicateGen"
    AbortedGen = "AbortedGen"
    RequestExpired = "RequestExpired"
    TooManyPrompts = "TooManyPrompts"
    NoValidWorkers = "NoValidWorkers"
    MaintenanceMode = "MaintenanceMode"
    TargetAccountFlagged = "TargetAccountFlagged"
    SourceAccountFlagged = "SourceAccountFlagged"
    FaultWhenKudosReceiving = "FaultWhenKudosReceiving"
    FaultWhenKudosSending = "FaultWhenKudosSending"
    TooFastKudosTransfers = "TooFastKudosTransfers"
    KudosTransferToAnon = "KudosTransferToAnon"
    KudosTransferToSelf = "KudosTransferToSelf"
    KudosTransferNotEnough = "KudosTransferNotEnough"
    NegativeKudosTransfer = "NegativeKudosTransfer"
    KudosTransferFromAnon = "KudosTransferFromAnon"
    InvalidKudosTransferAmount = "InvalidKudosTransferAmount"
    InvalidTargetUsername = "InvalidTargetUsername"
    IdempotencyKeyConflict = "IdempotencyKeyConflict"
    InvalidAwardUsername = "InvalidAwardUsername"
    KudosAwardToAnon = "KudosAwardToAnon"
    NotAllowedAwards = "NotAllowedAwards"
    NoWorkerModSelected = "NoWorkerModSelected"
    NoUserModSelected = "NoUserModSelected"
    NoHordeModSelected = "NoHordeModSelected"
    NoTeamModSelected = "NoTeamModSelected"
    NoFilterModSelected = "NoFilterModSelected"
    NoSharedKeyModSelected = "NoSharedKeyModSelected"
    BadRequest = "BadRequest"
    Forbidden = "Forbidden"
    Locked = "Locked"
    ControlNetMismatch = "ControlNetMismatch"
    HiResFixMismatch = "HiResFixMismatch"
    HiResMismatch = "HiResMismatch"
    TooManyLoras = "TooManyLoras"
    BadLoraVersion = "BadLoraVersion"
    TooManyTIs = "TooManyTIs"
    BetaAnonForbidden = "BetaAnonForbidden"
    BetaComparisonFault = "BetaComparisonFault"
    BadCFGDecimals = "BadCFGDecimals"
    BadCFGNumber = "BadCFGNumber"
    BadClientAgent = "BadClientAgent"
    SpecialMissingPayload = "SpecialMissingPayload"
    SpecialForbidden = "SpecialForbidden"
    SpecialMissingUsername = "SpecialMissingUsername"
    SpecialModelNeedsSpecialUser = "SpecialModelNeedsSpecialUser"
    SpecialFieldNeedsSpecialUser = "SpecialFieldNeedsSpecialUser"
    Img2ImgMismatch = "Img2ImgMismatch"
    TilingMismatch = "TilingMismatch"
    EducationCannotSendKudos = "EducationCannotSendKudos"
    InvalidPriorityUsername = "InvalidPriorityUsername"
    OnlyServiceAccountProxy = "OnlyServiceAccountProxy"
    RequiresTrust = "RequiresTrust"
    InvalidRemixModel = "InvalidRemixModel"
    InvalidExtraSourceImages = "InvalidExtraSourceImages"
    TooManyExtraSourceImages = "TooManyExtraSourceImages"
    MoreThanMinExtraSourceImage = "MoreThanMinExtraSourceImage"
    MissingFullSamplerOrder = "MissingFullSamplerOrder"
    TooManyStopSequences = "TooManyStopSequences"
    ExcessiveStopSequence = "ExcessiveStopSequence"
    TokenOverflow = "TokenOverflow"
    InvalidExtraTexts = "InvalidExtraTexts"
    MissingExtraTexts = "MissingExtraTexts"
    InvalidTransparencyModel = "InvalidTransparencyModel"
    InvalidTransparencyImg2Img = "InvalidTransparencyImg2Img"
    InvalidTransparencyCN = "InvalidTransparencyCN"
    InvalidControlType = "InvalidControlType"
    SamplerKnobInapplicable = "SamplerKnobInapplicable"
    SamplerKnobOutOfRange = "SamplerKnobOutOfRange"
    SamplerSolverTypeUnsupported = "SamplerSolverTypeUnsupported"
    SamplerSchedulerMismatch = "SamplerSchedulerMismatch"
    SchedulerBaselineMismatch = "SchedulerBaselineMismatch"
    FlowShiftInapplicable = "FlowShiftInapplicable"
    FlowShiftOutOfRange = "FlowShiftOutOfRange"
    ControlStrengthWithoutControlType = "ControlStrengthWithoutControlType"
    ControlStrengthOutOfRange = "ControlStrengthOutOfRange"
    StylesAnonForbidden = "StylesAnonForbidden"
    StylePromptMissingVars = "StylePromptMissingVars"
    StylesRequiresCustomizer = "StylesRequiresCustomizer"
    StyleMismatch = "StyleMismatch"
    StyleGetMistmatch = "StyleGetMistmatch"
    TooManyStyleExamples = "TooManyStyleExamples"
    ExampleURLAlreadyInUse = "ExampleURLAlreadyInUse"
    MessagesOnlyOwnWorkers = "MessagesOnlyOwnWorkers"
    NotUserOrMod = "NotUserOrMod"
    CannotDeleteMod = "CannotDeleteMod"
    UserNotDeleted = "UserNotDeleted"
    DeletedUser = "DeletedUser"
    CannotWipeActiveUser = "CannotWipeActiveUser"
    NonServiceForbidden = "NonServiceForbidden"
    NulByteInPayload = "NulByteInPayload"
