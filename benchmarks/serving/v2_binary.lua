-- wrk script: POST /v2/models/<model>/infer (wrk takes the path from its URL) as tritonclient.http sends it by default: a JSON
-- header, then the FP32 input as binary tensor data; all outputs asked for as binary.
dofile(os.getenv("WRK_SCRIPT_DIR") .. "/report.lua")
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("WRK_HEADER_LENGTH")
