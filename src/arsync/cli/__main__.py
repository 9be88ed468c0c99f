from arsync.cli import app

app()
