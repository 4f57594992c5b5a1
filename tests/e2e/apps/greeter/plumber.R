# Test app: needs the phgreet package from the suite's local CRAN-like repository.
library(phgreet)

#* @get /health
#* @serializer unboxedJSON
function() list(status = "ok")

#* @get /greet
#* @serializer unboxedJSON
function(name = "lab") list(message = phgreet::greet(name), pid = Sys.getpid(), port = as.integer(Sys.getenv("PORT")))

#* @get /pid
#* @serializer unboxedJSON
function() list(pid = Sys.getpid(), port = as.integer(Sys.getenv("PORT")))
