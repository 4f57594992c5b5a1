#* @apiTitle Cars
#* @apiDescription Stopping distances of cars, with interactive docs.

#* Cars at or above a speed
#* @param speed:int minimum speed
#* @get /car
function(speed = 0) {
  cars[cars$speed >= as.numeric(speed), ]
}

#* How many cars
#* @get /count
function() {
  list(count = nrow(cars))
}
