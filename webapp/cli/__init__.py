def init_app(app):
    from webapp.cli.commands import demo_cli, jobs_cli, queues_cli, users_cli

    for group in (users_cli, demo_cli, jobs_cli, queues_cli):
        app.cli.add_command(group)
