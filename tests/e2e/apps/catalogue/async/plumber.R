# Long computations run in background R processes (future), so the API keeps
# answering other requests meanwhile (promises).
library(promises)
library(future)
plan(multisession, workers = 2)

#* Sleep in a background process, then answer
#* @get /slow
function(seconds = 1) {
  seconds <- as.numeric(seconds)
  future_promise({
    Sys.sleep(seconds)
    list(slept = seconds, worker = Sys.getpid())
  })
}

#* Answer at once
#* @get /fast
function() {
  list(fast = TRUE, main = Sys.getpid())
}
