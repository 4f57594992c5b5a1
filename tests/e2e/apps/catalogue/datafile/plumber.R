# Reads its data once at start-up, from a file next to the API.
speeds <- read.csv("data/cars.csv")

#* How many rows the data file has
#* @get /count
function() {
  list(rows = nrow(speeds), columns = names(speeds))
}

#* Rows with this speed
#* @param speed:int
#* @get /speed/<speed:int>
function(speed) {
  speeds[speeds$speed == speed, ]
}
