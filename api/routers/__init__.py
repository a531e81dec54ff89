"""The API's resources, one router per module."""
