from tradeloop.cli.main import app

app(prog_name="tradeloop")
