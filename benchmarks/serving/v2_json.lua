-- wrk script: POST /v2/models/<model>/infer ($WRK_PATH) with JSON tensors in and out (the body from
-- $WRK_BODY_FILE); the RESULT line is report.lua's.
dofile(os.getenv("WRK_SCRIPT_DIR") .. "/report.lua")
wrk.path = os.getenv("WRK_PATH")
