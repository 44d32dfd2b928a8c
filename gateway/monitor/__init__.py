"""The exchange monitor (issue 17, in progress): faust-streaming's recovery fixed first."""
