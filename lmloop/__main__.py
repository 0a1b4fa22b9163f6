from lmloop.cli import app

app(prog_name="lmloop")
