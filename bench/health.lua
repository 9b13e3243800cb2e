-- wrk script: the raw baseline, a GET that touches no storage.
function init(args)
  key = os.getenv("LETHE_KEY")
end
function request()
  return wrk.format("GET", "/healthz", { ["Authorization"] = "Bearer " .. key })
end
