# The benchmark API (make bench): the same code behind plumber-hosting and
# behind the plumberDeploy-style baseline.

#* Liveness: 200 when the worker can serve.
#* @get /health
#* @serializer unboxedJSON
function() {
  list(status = "ok")
}

#* Trivial: what a proxy adds shows here.
#* @get /ping
#* @serializer unboxedJSON
function() {
  list(pong = TRUE)
}

#* I/O-bound stand-in: waits 50 ms (a database or HTTP call), no CPU.
#* @get /io
#* @serializer unboxedJSON
function() {
  Sys.sleep(0.05)
  list(slept_ms = 50)
}

#* CPU-bound: a fixed loop of 1e6 iterations (about 30 ms of one core).
#* @get /cpu
#* @serializer unboxedJSON
function() {
  s <- 0
  for (i in seq_len(1e6)) s <- s + sqrt(i)
  list(sum = s)
}
