// A module for the wiring fixture: one required parameter, one with a default, one output.
param name string
param location string = 'eastus'

output id string = name
