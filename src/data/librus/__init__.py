"""lib.ru: crawling (scrape_librus) and cleaning (clean_librus) of Russian classics."""
