-- wrk script: POST the bodies of $WRK_BODY_FILE (one JSON body a line) in turn, one per request;
-- report.lua's RESULT line.
dofile(os.getenv("WRK_SCRIPT_DIR") .. "/report.lua")
local bodies = {}
for line in io.lines(os.getenv("WRK_BODY_FILE")) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
