"""The web server: the page at ``/``, its assets under ``/static`` (nothing from a CDN), the JSON
API under ``/api``, documented at ``/docs`` (Swagger UI's own files served by the app, from the
fastapi-offline package: it reads offline too). Binds to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import File, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from realfake.app.service import Limits, ModelHolder, UploadError, analyse

STATIC = Path(__file__).parent / "static"
FAVICON = "/static/favicon.svg"


class ErrorBody(BaseModel):
    """What the API answers when it cannot score an upload: what is wrong and what to do, and for a case a
    client can act on, its name (``no_face``: no face was found; ``faces=off`` scores the whole image)."""

    error: str
    code: str | None = None


#: The answers /api/predict gives besides 200, as the OpenAPI schema documents them.
ERRORS = {
    400: {"model": ErrorBody, "description": "The file is empty, or an image that cannot be decoded (broken)."},
    413: {"model": ErrorBody, "description": "The upload is over the byte limit (`max_bytes` at /api/model), or "
                                             "the image has more pixels than the decoder's limit."},
    415: {"model": ErrorBody, "description": "The file is not an image (its bytes say another type)."},
    422: {"model": ErrorBody, "description": "No face was found (`code`: `no_face`; `faces=off` scores the whole "
                                             "image), or a parameter is malformed (FastAPI's `detail` list)."},
}


def create_app(holder: ModelHolder, limits: Limits = Limits()):
    """The FastAPI application around a loaded model."""
    app = FastAPIOffline(
        title="realfake",
        summary="Is this face real or generated? Upload a photo; every face found is scored.",
        docs_url="/docs",
        redoc_url=None,
        favicon_url=FAVICON,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_bytes + 64 * 1024:
            message = f"the request is {int(length):,} bytes, over the {limits.max_bytes:,}-byte upload limit."
            return JSONResponse({"error": message}, status_code=413)
        return await call_next(request)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        body = {"error": str(exc)} if exc.code is None else {"error": str(exc), "code": exc.code}
        return JSONResponse(body, status_code=exc.status)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/model")
    def model() -> dict[str, Any]:
        """The model that answers: its URI, registry version and decision threshold, and the upload limit."""
        return {**holder.get()[1], "max_bytes": limits.max_bytes}

    @app.post("/api/predict", responses=ERRORS)
    def predict(
        file: UploadFile = File(..., description="An image file: JPEG, PNG, WebP, HEIC, ..."),
        explain: bool = Query(False, description="Add a Grad-CAM overlay (PNG data URL) per face."),
        faces: str = Query("auto", pattern="^(auto|on|off)$",
                           description="auto: 256x256 images are aligned crops, others go through MTCNN."),
    ) -> dict[str, Any]:
        """Find every face in the image and score it: box, p_fake, verdict (fake, real or uncertain), reason."""
        data = file.file.read(limits.max_bytes + 1)
        return analyse(data, file.filename or "upload", holder, limits, explain=explain, faces=faces)

    return app


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, threshold: float | None = None,
          limits: Limits = Limits(), log=print) -> None:
    """Load the model, then serve the page and the API until interrupted."""
    import uvicorn

    holder = ModelHolder(model, threshold)
    info = holder.get()[1]
    version = f" v{info['version']}" if info["version"] else ""
    log(f"model: {model}{version} (threshold {info['threshold']:.3f})")
    log(info["trained_on_note"])
    log(f"page: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    uvicorn.run(create_app(holder, limits), host=host, port=port, log_level="warning")
