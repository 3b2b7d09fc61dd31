"""The OpenAI chat-completions wire format, both ways: pydantic models of requests and responses for servers
(``mmsafe serve-model``, a guard proxy), and the conversion between a ``Sample`` and its messages for clients (the
``openai`` and ``vllm`` targets). Images travel as base64 ``data:`` URLs; decoding one is bounded in bytes and pixels
(``mmsafe.images``' limits), so a request cannot make a server decode a decompression bomb."""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmsafe.images import MAX_BYTES, MAX_PIXELS, check_image, load_image
from mmsafe.types import ImageRef, Sample

# Formats every OpenAI-compatible server takes as they are; anything else is re-encoded as PNG.
SENT_AS_IS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


class WireError(ValueError):
    """A request that cannot become a ``Sample``; the message says which part and why (an HTTP 400)."""


# --- requests ---------------------------------------------------------------------------------------------------
class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ...: accepted, not used

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] | None = None


class ChatRequest(BaseModel):
    """What clients send. Fields mmsafe does not use (temperature, max_tokens, seed, ...) are accepted and ignored:
    generation settings are the served target's own."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)


# --- responses --------------------------------------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"


class ChatResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatChunk(BaseModel):
    """One server-sent event of a streamed answer."""

    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "mmsafe"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    """OpenAI's error shape, which clients (the ``openai`` SDK included) read the message from."""
    return {"error": {"message": message, "type": kind, "code": code}}


# --- images -----------------------------------------------------------------------------------------------------
def image_data_url(ref: ImageRef, max_side: int | None = None) -> str:
    """``ref`` as a base64 data URL; checked first (an unreadable or huge file raises ``ImageError`` naming it), sent
    as it is when its format is common, else (or when larger than ``max_side`` on a side, shrunk to fit) re-encoded
    as PNG."""
    from PIL import Image

    check_image(ref)
    data = ref.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        mime, size = SENT_AS_IS.get(im.format or ""), im.size
    if mime is None or (max_side is not None and max(size) > max_side):
        image = load_image(ref)
        if max_side is not None:
            image.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(url: str, where: str = "image", max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
                    ) -> ImageRef:
    """The image of a base64 ``data:`` URL, checked (at most ``max_bytes`` and ``max_pixels``, its structure read
    without decoding the pixels). Remote URLs are refused: a server here fetches nothing on a client's behalf."""
    header, comma, payload = url.partition(",")
    if not header.startswith("data:") or not comma:
        raise WireError(f"{where}: only base64 data: URLs are accepted, not {url[:40]!r}")
    if not header.endswith(";base64"):
        raise WireError(f"{where}: the data URL is not base64-encoded")
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise WireError(f"{where}: over the {max_bytes / 2**20:g} MiB image limit")
    try:
        ref = ImageRef(data=base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError) as e:
        raise WireError(f"{where}: invalid base64 ({e})") from None
    return checked_image(ref, where, max_bytes, max_pixels)


def checked_image(ref: ImageRef, where: str, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> ImageRef:
    """``ref`` if it is a readable image within ``max_bytes`` and ``max_pixels`` (read from its header, so a
    decompression bomb is refused before it is decoded), else a ``WireError`` naming ``where``."""
    if len(ref.read_bytes()) > max_bytes:
        raise WireError(f"{where}: over the {max_bytes / 2**20:g} MiB image limit")
    try:
        check_image(ref, max_pixels)
    except ValueError as e:  # ImageError: not an image, or over the pixel limit
        raise WireError(f"{where}: {e}") from None
    return ref


# --- samples <-> messages ---------------------------------------------------------------------------------------
def chat_messages(sample: Sample, max_image_side: int | None = None) -> list[dict[str, Any]]:
    """A sample as chat messages: its ``system`` prompt as a system message, then one user message with the images
    first and the prompt after (plain text content when there is no image, which text-only servers take)."""
    messages: list[dict[str, Any]] = []
    if sample.system is not None:
        messages.append({"role": "system", "content": sample.system})
    if sample.images:
        content: str | list[dict[str, Any]] = [
            *({"type": "image_url", "image_url": {"url": image_data_url(im, max_image_side)}} for im in sample.images),
            {"type": "text", "text": sample.prompt},
        ]
    else:
        content = sample.prompt
    messages.append({"role": "user", "content": content})
    return messages


def request_sample(request: ChatRequest, sample_id: str,
                   decode: Callable[[str, str], ImageRef] = decode_data_url) -> Sample:
    """A single-turn request (system or developer messages, then one user message) as a ``Sample``; its text parts
    joined by newlines, its images decoded by ``decode(url, where)``. Anything else raises ``WireError``: mmsafe
    targets answer one turn."""
    turns = _turns(request)
    if len(turns) != 1 or turns[0].role != "user":
        roles = ", ".join(m.role for m in turns) or "none"
        raise WireError(f"messages: the served target answers one user message (after optional system messages), "
                        f"got these turns: {roles}")
    return _sample(request, sample_id, decode)


def conversation_sample(request: ChatRequest, sample_id: str,
                        decode: Callable[[str, str], ImageRef] = decode_data_url) -> Sample:
    """A conversation as the ``Sample`` a guard's defenses screen: system and developer text as ``system``, the last
    user message's text as the prompt, and the images of *every* user message in order (a client re-sends its
    history, so an image from an earlier turn reaches the model again, and a client can write that history itself).
    One user turn gives what ``request_sample`` gives. The last turn must be the user's; images only in user turns."""
    turns = _turns(request)
    if len(turns) <= 1:
        return request_sample(request, sample_id, decode)
    if turns[-1].role != "user":
        raise WireError(f"messages: the last turn must be the user's, got {turns[-1].role}")
    return _sample(request, sample_id, decode)


def _turns(request: ChatRequest) -> list[Message]:
    """The conversation's turns: every message but the system and developer ones."""
    return [m for m in request.messages if m.role not in ("system", "developer")]


def _sample(request: ChatRequest, sample_id: str, decode: Callable[[str, str], ImageRef]) -> Sample:
    """System and developer text as ``system``; the last turn's text parts as the prompt; every user message's
    images in order, decoded; any other message must hold text only."""
    images: list[ImageRef] = []
    system: list[str] = []
    for m, message in enumerate(request.messages):
        if message.role == "user" and isinstance(message.content, list):
            images += [decode(part.image_url.url, f"messages[{m}].content[{i}].image_url")
                       for i, part in enumerate(message.content) if isinstance(part, ImagePart)]
        elif message.role != "user":
            text = _text(message)  # text only, or a WireError naming the role
            if message.role in ("system", "developer"):
                system.append(text)
    last = _turns(request)[-1]
    prompt = ("\n".join(p.text for p in last.content if isinstance(p, TextPart)) if isinstance(last.content, list)
              else last.content or "")
    return Sample(id=sample_id, prompt=prompt, images=tuple(images), system="\n\n".join(system) if system else None)


def conversation_messages(request: ChatRequest, sent: Sample, max_image_side: int | None = None
                          ) -> list[dict[str, Any]]:
    """The client's conversation as forwarded after the input defenses: ``sent.system`` as the one system message,
    every image replaced by its screened version (in the order ``conversation_sample`` read them), and the last user
    message's text by ``sent.prompt``; other turns as they came. One user turn: ``chat_messages(sent)``."""
    if len(_turns(request)) <= 1:
        return chat_messages(sent, max_image_side)
    screened = iter(sent.images)
    out: list[dict[str, Any]] = [] if sent.system is None else [{"role": "system", "content": sent.system}]
    last = len(request.messages) - 1
    for m, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            continue
        wire = message.model_dump(exclude_none=True)
        if message.role == "user" and isinstance(message.content, list):
            parts: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, ImagePart):
                    image = next(screened, None)
                    if image is None:
                        raise WireError("the input defenses dropped an image of the conversation")
                    parts.append({"type": "image_url", "image_url": {"url": image_data_url(image, max_image_side)}})
                elif m != last:
                    parts.append(part.model_dump())
            if m == last:
                parts.append({"type": "text", "text": sent.prompt})
            wire["content"] = parts
        elif m == last:
            wire["content"] = sent.prompt
        out.append(wire)
    return out


def _text(message: Message) -> str:
    if isinstance(message.content, list):
        if any(not isinstance(p, TextPart) for p in message.content):
            raise WireError(f"messages: a {message.role} message may hold text only")
        return "\n".join(p.text for p in message.content)  # type: ignore[union-attr]
    return message.content or ""
